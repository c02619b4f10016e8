//! `server::Json<T>`: the request-body extractor whose rejection is our `Error`, so malformed
//! or wrongly typed bodies get the OpenAI error shape (never axum's plain text), with the
//! offending field named in `param`.

use super::state::AppState;
use crate::Error;
use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            // The only body error axum reports with 413 is the size limit.
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge {
                    limit: AppState::from_ref(state).config().max_body_bytes,
                }
            } else {
                Error::invalid(
                    format!("could not read the request body: {e}"),
                    None,
                    "invalid_body",
                )
            }
        })?;
        parse_body(&bytes).map(Json)
    }
}

/// Parses a JSON body into `T`: invalid JSON and wrong shapes are 400s naming the field.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::invalid(
            format!("the request body is not valid JSON: {e}"),
            None,
            "invalid_json",
        )
    })?;
    from_value(value)
}

/// Converts a JSON value into `T`, naming the field that does not fit.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    if !value.is_object() {
        return Err(Error::invalid(
            "the request body must be a JSON object",
            None,
            "invalid_json",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let (param, code) = if path == "." {
            (None, "invalid_request")
        } else {
            (Some(path.as_str()), "invalid_type")
        };
        // serde reports a missing field at the parent's path; name the field itself.
        if let Some(field) = missing_field(&inner) {
            let full = if path == "." {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            };
            return Error::invalid(
                format!("missing required parameter '{full}'"),
                Some(&full),
                "missing_required_parameter",
            );
        }
        let message = match param {
            Some(p) => format!("invalid value for '{p}': {inner}"),
            None => inner,
        };
        Error::invalid(message, param, code)
    })
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ChatRequest;

    fn err_of(body: &str) -> (Option<String>, String) {
        match parse_body::<ChatRequest>(body.as_bytes()) {
            Ok(_) => panic!("accepted {body}"),
            Err(e) => {
                let s = e.shape();
                assert_eq!(s.status, 400);
                (s.param, s.code.unwrap_or_default())
            }
        }
    }

    #[test]
    fn names_the_offending_field() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("{", None, "invalid_json"),
            ("[]", None, "invalid_json"),
            (
                r#"{"model":"m"}"#,
                Some("messages"),
                "missing_required_parameter",
            ),
            (r#"{"messages":"hi"}"#, Some("messages"), "invalid_type"),
            (
                r#"{"messages":[],"temperature":"hot"}"#,
                Some("temperature"),
                "invalid_type",
            ),
            (
                r#"{"messages":[],"max_tokens":1.5}"#,
                Some("max_tokens"),
                "invalid_type",
            ),
            (
                r#"{"messages":[],"tools":[{"type":"function","function":{}}]}"#,
                Some("tools[0].function.name"),
                "missing_required_parameter",
            ),
        ];
        for (body, param, code) in cases {
            let (p, c) = err_of(body);
            assert_eq!(p.as_deref(), *param, "{body}");
            assert_eq!(c, *code, "{body}");
        }
    }

    #[test]
    fn accepts_a_minimal_request() {
        let r: ChatRequest =
            parse_body(br#"{"messages":[{"role":"user","content":"hi"}],"foo":1}"#).unwrap();
        assert_eq!(r.messages.len(), 1);
        assert!(r.extra.contains_key("foo"));
    }
}
