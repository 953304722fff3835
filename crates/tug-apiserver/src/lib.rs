//! The Kubernetes API server. Today: the cluster's PKI and credentials (`pki`). The REST
//! surface, watch cache and admission arrive with the rest of issue 3.

pub mod pki;
