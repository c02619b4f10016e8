//! OpenAI wire types (serde only, no logic).
