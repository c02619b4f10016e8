//! Chat templates rendered as Python jinja2 would. (Being written: see the templates issue.)

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("{0}")]
    Render(String),
}
