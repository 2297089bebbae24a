//! `flotilla login`: checks a hub URL and token with `GET /api/v1/clusters` and stores them as
//! the current context. Prints the context, the hub and the file, never the token.

use serde_json::json;

use super::{CommandError, Report, config_path, flag_token};
use crate::args::Global;
use crate::client::Client;
use crate::config::{self, Context};

pub fn login(global: &Global) -> Result<Report, CommandError> {
    let path = config_path(global)?;
    let mut config = config::load(&path)?;
    let token = flag_token(global)?.ok_or_else(|| {
        CommandError::Usage(
            "login needs a token: --token-file FILE, FLOTILLA_TOKEN or --token".to_owned(),
        )
    })?;
    // Without --hub, log in again to the context's hub with a new token.
    let existing = config
        .context(global.context.as_deref(), &path)
        .ok()
        .flatten();
    let hub = match (&global.hub, existing) {
        (Some(hub), _) => hub.clone(),
        (None, Some((_, context))) => context.hub.clone(),
        (None, None) => {
            return Err(CommandError::Usage(
                "login needs the hub's URL: --hub URL or FLOTILLA_HUB".to_owned(),
            ));
        }
    };
    let client = Client::new(&hub, token.clone(), global.timeout)?;
    client
        .get(&["clusters"])
        .map_err(|source| match source.status().map(|s| s.as_u16()) {
            Some(401 | 403) => CommandError::Login {
                hub: hub.clone(),
                source,
            },
            _ => CommandError::Client(source),
        })?;
    let name = global
        .context
        .clone()
        .unwrap_or_else(|| config::default_context_name(&hub));
    config.contexts.insert(
        name.clone(),
        Context {
            hub: hub.clone(),
            token,
        },
    );
    config.current_context = Some(name.clone());
    config::save(&path, &config)?;
    let path = path.display().to_string();
    let value = json!({"context": name, "hub": hub, "config": path});
    Ok(Report::answer(global.output, &value, || {
        format!("logged in to {hub} as context {name} (saved in {path})\n")
    }))
}
