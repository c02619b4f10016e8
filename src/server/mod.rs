//! The OpenAI-compatible HTTP server. (Being written: see the server issue.)
