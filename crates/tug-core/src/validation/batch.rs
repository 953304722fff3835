//! batch/v1: Jobs and CronJobs (whose schedule is parsed by `tug_k8s::cron`, the parser the
//! controller runs).

use std::collections::HashSet;

use serde_json::{Map, Value};
use tug_k8s::cron::Schedule;

use super::names::validate_labels;
use super::workloads::validate_selector_and_template;
use super::{Errors, immutable, is_present, obj_at, str_at};

/// A Job spec at `path` (`spec`, or `spec.jobTemplate.spec` of a CronJob).
pub(super) fn validate_job_spec(spec: &Map<String, Value>, path: &str, errs: &mut Errors) {
    for key in ["parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished", "backoffLimitPerIndex"] {
        errs.non_negative(spec, key, &format!("{path}.{key}"));
    }
    if let Some(deadline) = spec.get("activeDeadlineSeconds").filter(|v| !v.is_null())
        && deadline.as_i64().is_none_or(|d| d <= 0)
    {
        errs.invalid(&format!("{path}.activeDeadlineSeconds"), deadline, "must be greater than 0");
    }
    errs.one_of(spec, "completionMode", &format!("{path}.completionMode"), &["NonIndexed", "Indexed"]);
    if str_at(spec, "completionMode") == "Indexed" && !is_present(spec, "completions") {
        errs.required(&format!("{path}.completions"), "when completion mode is Indexed");
    }
    errs.one_of(
        spec,
        "podReplacementPolicy",
        &format!("{path}.podReplacementPolicy"),
        &["TerminatingOrFailed", "Failed"],
    );
    // A Job's selector is generated when created, so a top-level Job must have one; a CronJob's
    // job template may leave it out.
    let mut scoped = Errors::default();
    validate_selector_and_template(spec, "job", &["OnFailure", "Never"], path == "spec", &HashSet::new(), &mut scoped);
    errs.0.extend(scoped.0.into_iter().map(|mut cause| {
        cause.field = cause.field.replacen("spec", path, 1);
        cause
    }));
}

pub(super) fn validate_job_update(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
    immutable(new.get("selector"), old.get("selector"), "spec.selector", errs);
    immutable(new.get("template"), old.get("template"), "spec.template", errs);
    immutable(new.get("completionMode"), old.get("completionMode"), "spec.completionMode", errs);
    // Indexed Jobs may scale completions together with parallelism (elastic Indexed Jobs).
    let elastic = str_at(new, "completionMode") == "Indexed" && new.get("completions") == new.get("parallelism");
    if !elastic {
        immutable(new.get("completions"), old.get("completions"), "spec.completions", errs);
    }
}

pub(super) fn validate_cron_job(spec: &Map<String, Value>, errs: &mut Errors) {
    match spec.get("schedule").and_then(Value::as_str) {
        None | Some("") => errs.required("spec.schedule", ""),
        // Kubernetes' validateScheduleFormat: robfig/cron's ParseStandard (the parser the
        // controller runs), then no TZ/CRON_TZ in a new schedule.
        Some(schedule) => {
            let value = Value::String(schedule.into());
            if let Err(e) = Schedule::parse(schedule) {
                errs.invalid("spec.schedule", &value, &e.to_string());
            }
            if schedule.contains("TZ") {
                errs.invalid(
                    "spec.schedule",
                    &value,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                );
            }
        }
    }
    errs.one_of(spec, "concurrencyPolicy", "spec.concurrencyPolicy", &["Allow", "Forbid", "Replace"]);
    for key in ["startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        errs.non_negative(spec, key, &format!("spec.{key}"));
    }
    let job_template = obj_at(spec, "jobTemplate");
    if !is_present(spec, "jobTemplate") {
        errs.required("spec.jobTemplate", "");
        return;
    }
    validate_labels(obj_at(job_template, "metadata").get("labels"), "spec.jobTemplate.metadata.labels", errs);
    validate_job_spec(obj_at(job_template, "spec"), "spec.jobTemplate.spec", errs);
}

#[cfg(test)]
mod tests {
    use crate::validation::test_support::*;

    #[test]
    fn job_problems() {
        let cases = vec![
            (
                "batch/v1",
                "Job",
                json!({ "metadata": meta("pi"), "spec": { "template": { "spec": { "containers": [{ "name": "pi", "image": "perl" }] } } } }),
                vec![("spec.template.spec.restartPolicy", "FieldValueNotSupported")],
            ),
            (
                "batch/v1",
                "CronJob",
                json!({ "metadata": meta("tick"), "spec": { "schedule": "every minute", "jobTemplate": { "spec": { "template": { "spec": { "restartPolicy": "Always", "containers": [{ "name": "t", "image": "b" }] } } } } } }),
                vec![
                    ("spec.schedule", "FieldValueInvalid"),
                    ("spec.jobTemplate.spec.template.spec.restartPolicy", "FieldValueNotSupported"),
                ],
            ),
        ];
        expect(cases);
    }

    fn cron_job(schedule: &str) -> Value {
        json!({ "metadata": meta("tick"), "spec": { "schedule": schedule, "jobTemplate": { "spec": { "template": { "spec": { "restartPolicy": "OnFailure", "containers": [{ "name": "t", "image": "busybox" }] } } } } } })
    }

    /// The schedule is checked by the parser the CronJob controller runs (robfig/cron's grammar,
    /// with its words), so nothing the API accepts is unparseable later.
    #[test]
    fn cron_schedules_are_parsed_by_the_controllers_parser() {
        for good in ["*/5 * * * MON-FRI", "@every 1h30m", "@hourly", "0 0 13 * 5", "1,,2 * * * ?"] {
            assert_eq!(all_messages("batch/v1", "CronJob", cron_job(good)), Vec::<String>::new(), "{good}");
        }
        let cases = [
            (
                "@every banana",
                vec![
                    "spec.schedule: Invalid value: \"@every banana\": failed to parse duration @every banana: time: invalid duration \"banana\"",
                ],
            ),
            (
                "@fortnightly",
                vec!["spec.schedule: Invalid value: \"@fortnightly\": unrecognized descriptor: @fortnightly"],
            ),
            (
                "61 * * * *",
                vec!["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"],
            ),
            (
                "* * * *",
                vec!["spec.schedule: Invalid value: \"* * * *\": expected exactly 5 fields, found 4: [* * * *]"],
            ),
            ("0 0 * * 7", vec!["spec.schedule: Invalid value: \"0 0 * * 7\": end of range (7) above maximum (6): 7"]),
            (
                "CRON_TZ=UTC * * * * *",
                vec![
                    "spec.schedule: Invalid value: \"CRON_TZ=UTC * * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ],
            ),
            (
                "TZ=UTC * * *",
                vec![
                    "spec.schedule: Invalid value: \"TZ=UTC * * *\": expected exactly 5 fields, found 3: [* * *]",
                    "spec.schedule: Invalid value: \"TZ=UTC * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ],
            ),
        ];
        for (schedule, want) in cases {
            assert_eq!(all_messages("batch/v1", "CronJob", cron_job(schedule)), want, "{schedule}");
        }
    }

    #[test]
    fn job_templates_are_immutable() {
        let job = json!({ "metadata": meta("pi"), "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "pi", "image": "perl" }] } } } });
        assert!(update("batch/v1", "Job", job.clone(), &|j| j["spec"]["suspend"] = json!(true)).is_empty());
        assert_eq!(
            fields(update(
                "batch/v1",
                "Job",
                job.clone(),
                &|j| j["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5")
            )),
            ["spec.template"]
        );
    }
}
