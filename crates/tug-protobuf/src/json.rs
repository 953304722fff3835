//! Rendering prost messages as the JSON Kubernetes' Go types would marshal to.
//!
//! The API server decodes a protobuf body into Go structs and would then marshal them exactly as
//! `encoding/json` does. So each field carries a [`Mode`] telling how Go declares it: a value
//! field with `omitempty` drops its zero value, a pointer keeps any value that was sent, a field
//! without `omitempty` is always written (Go's zero value, or `null` for nil pointers, slices and
//! maps), and an embedded struct is flattened into its parent. Structs are never "empty" for
//! `encoding/json`, which is why `"status":{}` and `"creationTimestamp":null` appear.
//! Special wire types (Time, Quantity, IntOrString, raw JSON) get their own Go marshalling.

use std::collections::BTreeMap;

use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{FieldsV1, MicroTime, Time};
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};

use crate::DecodeError;

/// A protobuf message or scalar rendered as Kubernetes JSON.
pub(crate) trait ToJson: Default {
    fn to_json(&self) -> Result<Value, DecodeError>;

    /// Go's `omitempty` test. Structs are never empty for `encoding/json`.
    fn is_empty_value(&self) -> bool {
        false
    }
}

/// How the Go struct declares a field (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A value with `omitempty`: zero values are dropped.
    OmitEmpty,
    /// A value without `omitempty`: always written, zero when absent.
    Req,
    /// A pointer with `omitempty`: written when sent, whatever its value.
    Ptr,
    /// A pointer without `omitempty`: `null` when absent.
    Nullable,
    /// An embedded struct: its fields are flattened into the parent object.
    Inline,
}

impl Mode {
    fn is_pointer(self) -> bool {
        matches!(self, Mode::Ptr | Mode::Nullable)
    }

    fn omits_empty(self) -> bool {
        matches!(self, Mode::OmitEmpty | Mode::Ptr)
    }
}

/// A struct field: an optional scalar or message, a repeated field or a map.
pub(crate) trait Field {
    fn field_json(&self, mode: Mode) -> Result<Option<Value>, DecodeError>;
}

impl<T: ToJson> Field for Option<T> {
    fn field_json(&self, mode: Mode) -> Result<Option<Value>, DecodeError> {
        match self {
            Some(value) if mode.is_pointer() => value.to_json().map(Some),
            Some(value) => value_json(value, mode),
            None if mode.is_pointer() => Ok((!mode.omits_empty()).then_some(Value::Null)),
            // An absent value field decodes to Go's zero value.
            None => value_json(&T::default(), mode),
        }
    }
}

fn value_json<T: ToJson>(value: &T, mode: Mode) -> Result<Option<Value>, DecodeError> {
    if mode.omits_empty() && value.is_empty_value() { Ok(None) } else { value.to_json().map(Some) }
}

/// Nil slices and maps: omitted with `omitempty`, `null` without.
fn empty_collection(mode: Mode) -> Option<Value> {
    (!mode.omits_empty()).then_some(Value::Null)
}

impl<T: ToJson> Field for Vec<T> {
    fn field_json(&self, mode: Mode) -> Result<Option<Value>, DecodeError> {
        if self.is_empty() {
            return Ok(empty_collection(mode));
        }
        let items = self.iter().map(ToJson::to_json).collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Value::Array(items)))
    }
}

impl<T: ToJson> Field for BTreeMap<String, T> {
    fn field_json(&self, mode: Mode) -> Result<Option<Value>, DecodeError> {
        if self.is_empty() {
            return Ok(empty_collection(mode));
        }
        let mut object = Map::new();
        for (key, value) in self {
            object.insert(key.clone(), value.to_json()?);
        }
        Ok(Some(Value::Object(object)))
    }
}

/// Writes one field into `object`, flattening embedded structs.
pub(crate) fn put(
    object: &mut Map<String, Value>,
    json_name: String,
    mode: Mode,
    field: &impl Field,
) -> Result<(), DecodeError> {
    match (mode, field.field_json(mode)?) {
        (Mode::Inline, Some(Value::Object(inner))) => object.extend(inner),
        (_, Some(value)) => {
            object.insert(json_name, value);
        }
        (_, None) => {}
    }
    Ok(())
}

/// The JSON name of a prost field whose Go name follows plain camelCase (`working_dir` →
/// `workingDir`); the listing spells out the exceptions such as `hostIPC`.
pub(crate) fn camel_case(ident: &str) -> String {
    let ident = ident.strip_prefix("r#").unwrap_or(ident);
    let mut name = String::with_capacity(ident.len());
    let mut upper_next = false;
    for ch in ident.chars() {
        match ch {
            '_' => upper_next = true,
            _ if upper_next => {
                name.extend(ch.to_uppercase());
                upper_next = false;
            }
            _ => name.push(ch),
        }
    }
    name
}

/// Implements [`ToJson`] for prost messages from a listing of their fields.
///
/// Every field must be listed (the destructuring is exhaustive, so a new k8s-pb field fails to
/// compile); each may name its JSON key (`host_ipc as "hostIPC"`) and its [`Mode`].
macro_rules! json_messages {
    ($( $($segment:ident)::+ { $( $field:ident $(as $json:literal)? $(: $mode:ident)? ),* $(,)? } )*) => {
        $(
            impl $crate::json::ToJson for $($segment)::+ {
                fn to_json(&self) -> Result<serde_json::Value, $crate::DecodeError> {
                    let $($segment)::+ { $($field),* } = self;
                    let mut object = serde_json::Map::new();
                    $(
                        $crate::json::put(
                            &mut object,
                            json_messages!(@name $field $(, $json)?),
                            json_messages!(@mode $($mode)?),
                            $field,
                        )?;
                    )*
                    Ok(serde_json::Value::Object(object))
                }
            }
        )*
    };
    (@name $field:ident) => { $crate::json::camel_case(stringify!($field)) };
    (@name $field:ident, $json:literal) => { String::from($json) };
    (@mode) => { $crate::json::Mode::OmitEmpty };
    (@mode $mode:ident) => { $crate::json::Mode::$mode };
}
pub(crate) use json_messages;

impl ToJson for String {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(Value::String(self.clone()))
    }
    fn is_empty_value(&self) -> bool {
        self.is_empty()
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(Value::Bool(*self))
    }
    fn is_empty_value(&self) -> bool {
        !*self
    }
}

impl ToJson for i32 {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(Value::from(*self))
    }
    fn is_empty_value(&self) -> bool {
        *self == 0
    }
}

impl ToJson for i64 {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(Value::from(*self))
    }
    fn is_empty_value(&self) -> bool {
        *self == 0
    }
}

impl ToJson for f64 {
    fn to_json(&self) -> Result<Value, DecodeError> {
        serde_json::Number::from_f64(*self)
            .map(Value::Number)
            .ok_or_else(|| invalid("number", format!("{self} has no JSON form")))
    }
    fn is_empty_value(&self) -> bool {
        *self == 0.0
    }
}

/// Protobuf `bytes`: Go marshals `[]byte` as standard base64.
impl ToJson for Vec<u8> {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(Value::String(base64(self)))
    }
    fn is_empty_value(&self) -> bool {
        self.is_empty()
    }
}

/// metav1.Time: an empty message is Go's zero time (`null`); nanoseconds are dropped, as Go's
/// protobuf decoding of Time does.
impl ToJson for Time {
    fn to_json(&self) -> Result<Value, DecodeError> {
        if self.seconds.is_none() && self.nanos.is_none() {
            return Ok(Value::Null);
        }
        rfc3339(self.seconds.unwrap_or_default(), None).map(Value::String)
    }
}

/// metav1.MicroTime: like Time but keeps microseconds.
impl ToJson for MicroTime {
    fn to_json(&self) -> Result<Value, DecodeError> {
        if self.seconds.is_none() && self.nanos.is_none() {
            return Ok(Value::Null);
        }
        let nanos = self.nanos.unwrap_or_default();
        let micros =
            u32::try_from(nanos / 1000).map_err(|_| invalid("time", format!("negative nanoseconds {nanos}")))?;
        rfc3339(self.seconds.unwrap_or_default(), Some(micros)).map(Value::String)
    }
}

/// resource.Quantity travels as its canonical string; Go's zero Quantity marshals as "0".
impl ToJson for Quantity {
    fn to_json(&self) -> Result<Value, DecodeError> {
        let text = self.string.as_deref().filter(|text| !text.is_empty()).unwrap_or("0");
        Ok(Value::String(text.to_owned()))
    }
}

/// intstr.IntOrString: type 1 is a string, anything else the integer.
impl ToJson for IntOrString {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(match self.r#type {
            Some(1) => Value::String(self.str_val.clone().unwrap_or_default()),
            _ => Value::from(self.int_val.unwrap_or_default()),
        })
    }
}

impl ToJson for FieldsV1 {
    fn to_json(&self) -> Result<Value, DecodeError> {
        raw_json("fieldsV1", self.raw.as_deref())
    }
}

impl ToJson for RawExtension {
    fn to_json(&self) -> Result<Value, DecodeError> {
        raw_json("embedded object", self.raw.as_deref())
    }
}

/// authentication/authorization `ExtraValue` is a Go `[]string`, a list in JSON.
macro_rules! extra_value_as_list {
    ($($ty:path),*) => {$(
        impl ToJson for $ty {
            fn to_json(&self) -> Result<Value, DecodeError> {
                Ok(Value::Array(self.items.iter().cloned().map(Value::String).collect()))
            }
        }
    )*};
}
extra_value_as_list!(
    k8s_pb::api::authentication::v1::ExtraValue,
    k8s_pb::api::authorization::v1::ExtraValue,
    k8s_pb::api::certificates::v1::ExtraValue
);

/// Embedded raw JSON (Go `MarshalJSON` of FieldsV1 and RawExtension): nil is `null`.
fn raw_json(what: &'static str, raw: Option<&[u8]>) -> Result<Value, DecodeError> {
    match raw {
        None | Some([]) => Ok(Value::Null),
        Some(bytes) => serde_json::from_slice(bytes).map_err(|err| invalid(what, err.to_string())),
    }
}

fn invalid(what: &'static str, reason: String) -> DecodeError {
    DecodeError::InvalidValue { what, reason }
}

/// RFC 3339 in UTC as Go's `time.RFC3339` ("2024-01-02T03:04:05Z"), or with six fractional
/// digits for MicroTime. Years outside 0000–9999 have no RFC 3339 form.
fn rfc3339(seconds: i64, micros: Option<u32>) -> Result<String, DecodeError> {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return Err(invalid("time", format!("{seconds} seconds since the epoch is outside years 0-9999")));
    }
    let (hour, minute, second) = (second_of_day / 3600, second_of_day % 3600 / 60, second_of_day % 60);
    let fraction = micros.map(|micros| format!(".{micros:06}")).unwrap_or_default();
    Ok(format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z"))
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
fn base64(bytes: &[u8]) -> String {
    use ::base64::Engine as _;
    ::base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        for (input, expected) in [("", ""), ("v", "dg=="), ("va", "dmE="), ("val", "dmFs"), ("hello?>", "aGVsbG8/Pg==")]
        {
            assert_eq!(base64(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn rfc3339_renders_utc_seconds() {
        for (seconds, expected) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_704_164_645, "2024-01-02T03:04:05Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339(seconds, None).unwrap(), expected);
        }
        assert_eq!(rfc3339(1_704_164_645, Some(1234)).unwrap(), "2024-01-02T03:04:05.001234Z");
        assert!(rfc3339(253_402_300_800, None).is_err());
    }

    #[test]
    fn camel_case_follows_go_names() {
        for (ident, expected) in [("name", "name"), ("working_dir", "workingDir"), ("r#type", "type")] {
            assert_eq!(camel_case(ident), expected);
        }
    }

    #[test]
    fn time_without_fields_is_null_and_drops_nanoseconds() {
        assert_eq!(Time::default().to_json().unwrap(), Value::Null);
        let time = Time { seconds: Some(1_704_164_645), nanos: Some(999) };
        assert_eq!(time.to_json().unwrap(), Value::from("2024-01-02T03:04:05Z"));
    }

    #[test]
    fn int_or_string_follows_its_type() {
        let number = IntOrString { r#type: Some(0), int_val: Some(8080), str_val: None };
        let name = IntOrString { r#type: Some(1), int_val: None, str_val: Some("http".into()) };
        assert_eq!(number.to_json().unwrap(), Value::from(8080));
        assert_eq!(name.to_json().unwrap(), Value::from("http"));
    }

    #[test]
    fn modes_follow_go_marshalling() {
        let zero = Some(0i32);
        let cases = [
            (Mode::OmitEmpty, zero, None),
            (Mode::Req, zero, Some(Value::from(0))),
            (Mode::Ptr, zero, Some(Value::from(0))),
            (Mode::Ptr, None, None),
            (Mode::Nullable, None, Some(Value::Null)),
            (Mode::Req, None, Some(Value::from(0))),
        ];
        for (mode, field, expected) in cases {
            assert_eq!(field.field_json(mode).unwrap(), expected, "{mode:?} {field:?}");
        }
        assert_eq!(Vec::<String>::new().field_json(Mode::Req).unwrap(), Some(Value::Null));
        assert_eq!(Vec::<String>::new().field_json(Mode::OmitEmpty).unwrap(), None);
    }
}
