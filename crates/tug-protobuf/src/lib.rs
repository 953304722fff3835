//! Kubernetes protobuf request bodies decoded into JSON. TODO: being written.
