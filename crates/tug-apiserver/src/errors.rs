//! Mapping store errors onto API errors.

use tug_core::status::ApiError;

/// A store failure the handler did not expect (conflicts and not-found are handled where the
/// object's name is known).
pub fn from_store(e: tug_store::Error) -> ApiError {
    use tug_store::Error as E;
    match e {
        E::Compacted { requested, compacted } => ApiError::gone(format!(
            "The resourceVersion for the provided list is too old: {requested} (history starts after {compacted})"
        )),
        E::FutureRevision { requested, current } => {
            ApiError::timeout(format!("Too large resource version: {requested}, current: {current}"))
        }
        E::InvalidContinue(m) => ApiError::bad_request(format!("invalid continue token: {m}")),
        E::Unavailable(m) => ApiError::unavailable(format!("the datastore is unavailable: {m}")),
        other => ApiError::internal(other.to_string()),
    }
}
