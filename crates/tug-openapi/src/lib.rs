//! OpenAPI v3 documents for the served resource types. TODO: being written.
