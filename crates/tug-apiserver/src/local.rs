//! The API as an in-process tower service, for the components inside `tug server` (scheduler,
//! controllers, the local agent): a `kube::Client` over it talks to this API server with exactly
//! the same contract and authentication as over HTTPS, minus TCP and TLS.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, HttpBody};
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response, header};

use crate::Api;

/// A request goes through `Api::handle` as if it came over the network with this token.
#[derive(Clone)]
pub struct LocalService {
    api: Arc<Api>,
    authorization: HeaderValue,
}

impl std::fmt::Debug for LocalService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalService")
    }
}

impl LocalService {
    pub fn new(api: Arc<Api>, token: &str) -> LocalService {
        let authorization = HeaderValue::from_str(&format!("Bearer {token}")).expect("tokens are hex");
        LocalService { api, authorization }
    }
}

impl<B> tower::Service<Request<B>> for LocalService
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let api = self.api.clone();
        let mut req = req.map(Body::new);
        req.headers_mut().insert(header::AUTHORIZATION, self.authorization.clone());
        Box::pin(async move { Ok(api.handle(req).await) })
    }
}
