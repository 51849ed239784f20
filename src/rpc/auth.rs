//! Bearer-token access control: the interceptor every service but health runs behind.

use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// Checks the bearer token in constant time.
#[derive(Clone)]
pub struct Auth {
    token: Option<Arc<[u8]>>,
}

impl Auth {
    /// An interceptor requiring `token` (or nothing, when `None`).
    pub fn new(token: Option<&str>) -> Self {
        Auth {
            token: token.map(|t| Arc::from(format!("Bearer {t}").into_bytes())),
        }
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.token else {
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if given.len() == expected.len() && bool::from(given.ct_eq(expected)) {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong bearer token (send `authorization: Bearer <token>`)",
            ))
        }
    }
}
