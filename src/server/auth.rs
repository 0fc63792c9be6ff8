//! Bearer tokens: one service token for ingest, one token per user for their votes and
//! personal rankings, and an optional token for reads.

use std::collections::HashMap;
use std::path::Path;

use tonic::metadata::MetadataMap;

use super::ServerError;

/// Who may do what. Tokens are given at start (flags, environment or a file), never stored.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Needed by `Ingest`. Without it, ingest over gRPC is refused.
    pub write_token: Option<String>,
    /// When set, every read needs this token, the write token or a user's token.
    pub read_token: Option<String>,
    /// user -> token: `Vote` and personal rankings need the user's own token.
    pub users: HashMap<String, String>,
}

/// Compares without an early exit, so the time taken says nothing about the token.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim())
}

impl Access {
    /// Reads a user token file: one `user token` pair per line; `#` starts a comment.
    pub fn read_user_tokens(path: &Path) -> Result<HashMap<String, String>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(user), Some(token), None) => {
                    users.insert(user.to_string(), token.to_string());
                }
                _ => {
                    return Err(format!(
                        "{}:{}: expected `user token`",
                        path.display(),
                        i + 1
                    ))
                }
            }
        }
        Ok(users)
    }

    fn is_known(&self, token: &str) -> bool {
        [&self.write_token, &self.read_token]
            .into_iter()
            .flatten()
            .chain(self.users.values())
            .any(|t| same(t, token))
    }

    pub fn check_read(&self, metadata: &MetadataMap) -> Result<(), ServerError> {
        if self.read_token.is_none() {
            return Ok(());
        }
        match bearer(metadata) {
            Some(t) if self.is_known(t) => Ok(()),
            _ => Err(ServerError::Unauthenticated),
        }
    }

    pub fn check_write(&self, metadata: &MetadataMap) -> Result<(), ServerError> {
        let Some(expected) = &self.write_token else {
            return Err(ServerError::PermissionDenied(
                "writes are disabled: start the server with --token (or ASTERISM_TOKEN)".into(),
            ));
        };
        match bearer(metadata) {
            Some(t) if same(t, expected) => Ok(()),
            Some(t) if self.is_known(t) => Err(ServerError::PermissionDenied(
                "this token may not ingest; use the service's write token".into(),
            )),
            _ => Err(ServerError::Unauthenticated),
        }
    }

    /// The caller must hold `user`'s own token.
    pub fn check_user(&self, metadata: &MetadataMap, user: &str) -> Result<(), ServerError> {
        let token = bearer(metadata).ok_or(ServerError::Unauthenticated)?;
        match self.users.get(user) {
            Some(expected) if same(token, expected) => Ok(()),
            _ if self.is_known(token) => Err(ServerError::PermissionDenied(format!(
                "only `{user}`'s token reaches their votes and rankings"
            ))),
            _ => Err(ServerError::Unauthenticated),
        }
    }
}
