//! Translation between the other API dialects agents speak and the chat path: Anthropic
//! Messages (`anthropic`) and OpenAI Responses (`responses`). Each adapter turns its
//! request into an OpenAI chat body and the answer's blocks back into its wire shape; the
//! generation itself is the chat path's (`handlers::turn`). No I/O, no axum.

pub mod anthropic;
pub mod responses;
pub mod store;
