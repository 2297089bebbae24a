//! The API tokens routes: create one (the token is in the answer once, only its SHA-256 is
//! kept), list them, revoke one. Their grants, expiry and revocation are checked on every
//! request by `api::authenticate`.

use http::StatusCode;
use jiff::Timestamp;
use rand_core::{OsRng, RngCore as _};
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

use super::handlers::{Res, audit, body};
use super::{ApiError, ApiState, Call, json};
use crate::auth::Grant;
use crate::auth::tokens::{self, ApiToken};
use crate::store::Store as _;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TokenRequest {
    name: String,
    grants: Vec<Grant>,
    /// `90m`, `12h`, `30d`; 30 days when absent, at most 366 days.
    #[serde(default)]
    expires_in: Option<String>,
}

fn token_json(token: &ApiToken, now: Timestamp) -> Value {
    let state = match &token.revoked {
        Some(_) => "revoked",
        None if token.expires_at <= now => "expired",
        None => "active",
    };
    json!({
        "id": token.id,
        "name": token.name,
        "grants": token.grants,
        "createdAt": token.created_at.to_string(),
        "createdBy": token.created_by,
        "expiresAt": token.expires_at.to_string(),
        "revokedAt": token.revoked.as_ref().map(|(at, _)| at.to_string()),
        "revokedBy": token.revoked.as_ref().map(|(_, by)| by),
        "state": state,
    })
}

fn valid_token_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// `POST /api/v1/tokens`.
pub(super) async fn create_token(state: &ApiState, call: &Call) -> Res {
    let request: TokenRequest = body(call)?;
    if !valid_token_name(&request.name) {
        return Err(ApiError::bad_request(format!(
            "name {:?}: 1 to 63 letters, digits, '-', '_' or '.'",
            request.name
        )));
    }
    if request.grants.is_empty() {
        return Err(ApiError::bad_request(
            "grants: a token needs at least one grant, e.g. {\"role\": \"viewer\", \"project\": \"shop\"}",
        ));
    }
    // Through the parser flags and the CLI use: an empty project, admin on one project.
    let grants = request
        .grants
        .iter()
        .map(|grant| Grant::parse(&grant.to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad_request(format!("grants: {e}")))?;
    let lifetime = match &request.expires_in {
        None => tokens::DEFAULT_LIFETIME,
        Some(text) => tokens::parse_lifetime(text).map_err(ApiError::bad_request)?,
    };
    let now = Timestamp::now();
    let expires_at = now
        .checked_add(lifetime)
        .map_err(|e| ApiError::bad_request(format!("expiresIn: {e}")))?;
    let secret = crate::init::new_token();
    let mut id = [0u8; 6];
    OsRng.fill_bytes(&mut id);
    let token = ApiToken {
        id: hex::encode(id),
        name: request.name.clone(),
        hash: crate::init::token_hash(secret.expose_secret()),
        grants,
        created_at: now,
        created_by: call.principal.name.clone(),
        expires_at,
        revoked: None,
    };
    let entry = audit(
        call,
        "create API token",
        &format!("token {}", token.name),
        json!({"id": token.id, "grants": token.grants, "expiresAt": expires_at.to_string()}),
    );
    state.hub.store().put_api_token(&token, &entry).await?;
    info!(token = %token.name, id = %token.id, "API token created");
    let mut answer = token_json(&token, now);
    answer["token"] = json!(secret.expose_secret());
    Ok(json(StatusCode::CREATED, &answer))
}

/// `GET /api/v1/tokens`: every token, newest first, never the token itself.
pub(super) async fn tokens(state: &ApiState) -> Res {
    let now = Timestamp::now();
    let tokens: Vec<Value> = state
        .hub
        .store()
        .api_tokens()
        .await?
        .iter()
        .map(|t| token_json(t, now))
        .collect();
    Ok(json(StatusCode::OK, &json!({"tokens": tokens})))
}

/// `DELETE /api/v1/tokens/{id}`: the token stops working at once.
pub(super) async fn revoke_token(state: &ApiState, id: &str, call: &Call) -> Res {
    let store = state.hub.store();
    let token = store
        .api_token(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no API token with id {id}")))?;
    let now = Timestamp::now();
    let entry = audit(
        call,
        "revoke API token",
        &format!("token {}", token.name),
        json!({"id": token.id}),
    );
    if !store
        .revoke_api_token(id, now, &call.principal.name, &entry)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "revoked",
            format!("API token {} ({id}) is already revoked", token.name),
        ));
    }
    info!(token = %token.name, %id, "API token revoked");
    let revoked = store.api_token(id).await?.unwrap_or(token);
    Ok(json(StatusCode::OK, &token_json(&revoked, now)))
}
