//! ConfigMaps and Secrets (core/v1): data keys, sizes, base64 payloads as Go decodes them, the
//! keys each Secret type requires, and `immutable`.

use serde_json::{Map, Value};

use super::{Errors, obj_at, str_at};

const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const CONFIG_DATA_SIZE_LIMIT: usize = 1024 * 1024;

fn validate_config_key(key: &str, field: &str, errs: &mut Errors) {
    let value = Value::String(key.into());
    if key.len() > 253 {
        errs.invalid(field, &value, "must be no more than 253 characters");
    }
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        errs.invalid(field, &value, CONFIG_KEY_MSG);
    }
    if key == "." || key == ".." {
        errs.invalid(field, &value, &format!("must not be '{key}'"));
    } else if key.starts_with("..") {
        errs.invalid(field, &value, "must not start with '..'");
    }
}

/// Keys of `data` and `binaryData`: valid, and not in both; returns the total payload size.
fn validate_data_keys(root: &Map<String, Value>, errs: &mut Errors) -> usize {
    let mut total = 0;
    let data = obj_at(root, "data");
    for (key, value) in data {
        validate_config_key(key, &format!("data[{key}]"), errs);
        total += value.as_str().map_or(0, str::len);
    }
    for (key, value) in obj_at(root, "binaryData") {
        validate_config_key(key, &format!("binaryData[{key}]"), errs);
        if data.contains_key(key) {
            errs.duplicate(&format!("data[{key}]"), &Value::String(key.clone()));
        }
        total += value.as_str().map_or(0, |v| v.len() * 3 / 4);
    }
    total
}

pub(super) fn validate_config_map(root: &Map<String, Value>, errs: &mut Errors) {
    if validate_data_keys(root, errs) > CONFIG_DATA_SIZE_LIMIT {
        errs.too_long("", CONFIG_DATA_SIZE_LIMIT);
    }
    for (key, value) in obj_at(root, "binaryData") {
        if let Err(msg) = check_base64(value) {
            errs.invalid(&format!("binaryData[{key}]"), &Value::String("<binary data redacted>".into()), &msg);
        }
    }
}

pub(super) fn validate_secret(root: &Map<String, Value>, errs: &mut Errors) {
    let data = obj_at(root, "data");
    let mut total = 0;
    for (key, value) in data {
        validate_config_key(key, &format!("data[{key}]"), errs);
        match check_base64(value) {
            Ok(len) => total += len,
            Err(msg) => {
                errs.invalid(&format!("data[{key}]"), &Value::String("<secret contents redacted>".into()), &msg)
            }
        }
    }
    for key in obj_at(root, "stringData").keys() {
        validate_config_key(key, &format!("stringData[{key}]"), errs);
    }
    if total > CONFIG_DATA_SIZE_LIMIT {
        errs.too_long("data", CONFIG_DATA_SIZE_LIMIT);
    }
    let has = |key: &str| data.contains_key(key) || obj_at(root, "stringData").contains_key(key);
    let required_keys: &[&str] = match str_at(root, "type") {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    for key in required_keys.iter().filter(|k| !has(k)) {
        errs.required(&format!("data[{key}]"), "");
    }
    if str_at(root, "type") == "kubernetes.io/service-account-token"
        && str_at(obj_at(obj_at(root, "metadata"), "annotations"), "kubernetes.io/service-account.name").is_empty()
    {
        errs.required("metadata.annotations[kubernetes.io/service-account.name]", "");
    }
}

/// Go's `base64.StdEncoding`, which its JSON decoder reads `[]byte` with: padded, and (not being
/// `Strict`) accepting non-zero trailing bits.
const GO_STD_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
);

/// Standard padded base64 as Go's JSON decoder reads `[]byte` (line breaks ignored); returns the
/// decoded length, or Go's message with the offending byte's offset in the text.
fn check_base64(value: &Value) -> Result<usize, String> {
    use base64::Engine as _;
    let Some(text) = value.as_str() else { return Err("must be a base64-encoded string".into()) };
    let (offsets, symbols): (Vec<usize>, Vec<u8>) =
        text.bytes().enumerate().filter(|(_, b)| *b != b'\n' && *b != b'\r').unzip();
    let error = match GO_STD_BASE64.decode(&symbols) {
        Ok(bytes) => return Ok(bytes.len()),
        Err(error) => error,
    };
    let end = offsets.last().map_or(0, |offset| offset + 1);
    let offset = match error {
        base64::DecodeError::InvalidByte(i, _) | base64::DecodeError::InvalidLastSymbol(i, _) => {
            offsets.get(i).copied().unwrap_or(end)
        }
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => end,
    };
    Err(format!("illegal base64 data at input byte {offset}"))
}

pub(super) fn validate_immutable_data(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    const MESSAGE: &str = "field is immutable when `immutable` is set";
    if new.get("immutable") != old.get("immutable") {
        errs.forbidden("immutable", MESSAGE);
    }
    for key in ["data", "binaryData"] {
        let (new_data, old_data) = (obj_at(new, key), obj_at(old, key));
        if new_data != old_data {
            errs.forbidden(key, MESSAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_base64;
    use crate::validation::test_support::*;

    /// Secrets' `data` decodes as Go's `base64.StdEncoding` does (the `base64` crate, configured
    /// as Go's non-strict standard encoding).
    #[test]
    fn secret_data_is_read_as_go_reads_base64() {
        #[rustfmt::skip]
        let cases = [
            ("", Ok(0)),
            ("QQ==", Ok(1)),
            ("QUI=", Ok(2)),
            ("QUJD", Ok(3)),
            ("QU\nJD\r\n", Ok(3)),
            ("QR==", Ok(1)),
            ("ab!d", Err(2)),
            ("QUJ", Err(3)),
            ("QQ", Err(2)),
        ];
        for (text, want) in cases {
            let want = want.map_err(|offset| format!("illegal base64 data at input byte {offset}"));
            assert_eq!(check_base64(&Value::String(text.into())), want, "{text:?}");
        }
        assert!(check_base64(&Value::Bool(true)).is_err());
    }

    #[test]
    fn config_map_and_secret_problems() {
        let cases = vec![
            (
                "v1",
                "ConfigMap",
                json!({ "metadata": meta("c"), "data": { "bad/key": "x" } }),
                vec![("data[bad/key]", "FieldValueInvalid")],
            ),
            (
                "v1",
                "ConfigMap",
                json!({ "metadata": meta("c"), "data": { "k": "x" }, "binaryData": { "k": "eA==" } }),
                vec![("data[k]", "FieldValueDuplicate")],
            ),
            (
                "v1",
                "Secret",
                json!({ "metadata": meta("s"), "data": { "pw": "not base64!" } }),
                vec![("data[pw]", "FieldValueInvalid")],
            ),
            (
                "v1",
                "Secret",
                json!({ "metadata": meta("s"), "data": { "pw": "abc" } }),
                vec![("data[pw]", "FieldValueInvalid")],
            ),
            (
                "v1",
                "Secret",
                json!({ "metadata": meta("s"), "type": "kubernetes.io/tls", "data": { "tls.crt": "" } }),
                vec![("data[tls.key]", "FieldValueRequired")],
            ),
        ];
        expect(cases);
    }

    #[test]
    fn immutable_data_stays_and_secret_types_are_fixed() {
        let cm = json!({ "metadata": meta("c"), "data": { "a": "1" }, "immutable": true });
        assert_eq!(fields(update("v1", "ConfigMap", cm.clone(), &|c| c["data"]["a"] = json!("2"))), ["data"]);
        assert!(
            update("v1", "ConfigMap", cm.clone().tap(|c| c["immutable"] = json!(false)), &|c| c["data"]["a"] =
                json!("2"))
            .is_empty()
        );
        assert_eq!(
            fields(
                update("v1", "Secret", json!({ "metadata": meta("s") }), &|s| s["type"] = json!("kubernetes.io/tls"))
            ),
            ["data[tls.crt]", "data[tls.key]", "type"]
        );
    }
}
