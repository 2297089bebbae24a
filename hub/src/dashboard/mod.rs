//! The dashboard: server-rendered HTML pages of the fleet, served by the human API's
//! listener for every path outside `/api/`.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::api::{ApiState, Body};

/// Answers a dashboard request.
pub(crate) async fn serve(
    _state: &ApiState,
    _request: Request<Incoming>,
    _shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let mut response = Response::new(crate::api::full("the dashboard is not built yet\n"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
