//! Forcing a tool call for `tool_choice: "required"` or a named function, and JSON output
//! for `response_format: json_object`, in decoding rather than by hoping: the prompt gets
//! the parser's call opening (and the name, when it is fixed) appended, and a constraint
//! keeps the continuation to a declared name and a JSON arguments object. The forced text,
//! the generated text and the closing markup then go through the normal parser, so the
//! result is an ordinary tool call.

use super::backend::call_syntax_for;
use super::json_constraint::{ChoiceThenObject, JsonObjectConstraint};
use super::validate::ToolMode;
use crate::engine::Constraint;
use crate::Error;

/// What a forced request adds around the model's output.
pub struct Forcing {
    /// Appended to the rendered prompt, and fed to the parser before the output.
    pub prefix: String,
    /// Fed to the parser after the output once the constraint completed.
    pub close: &'static str,
    pub constraint: Box<dyn Constraint>,
}

fn json_string(s: &str) -> String {
    // Serializing a &str cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// The forcing for a request, if it needs one.
pub fn forcing(mode: &ToolMode, json_object: bool, parser: &str) -> Result<Option<Forcing>, Error> {
    let ToolMode::Forced(names) = mode else {
        return Ok(json_object.then(|| Forcing {
            prefix: String::new(),
            close: "",
            constraint: Box::new(JsonObjectConstraint::default()),
        }));
    };
    let syntax = call_syntax_for(parser).ok_or_else(|| {
        Error::invalid(
            format!("tool_choice 'required' or a named function is not supported with the '{parser}' tool parser"),
            Some("tool_choice"),
            "unsupported_parameter",
        )
    })?;
    let forcing = match names.as_slice() {
        [one] => Forcing {
            prefix: format!(
                "{}{}{}",
                syntax.open,
                json_string(one),
                syntax.before_arguments
            ),
            close: syntax.close,
            constraint: Box::new(JsonObjectConstraint::default()),
        },
        several => Forcing {
            prefix: syntax.open.to_owned(),
            close: syntax.close,
            constraint: Box::new(ChoiceThenObject::new(
                several
                    .iter()
                    .map(|n| format!("{}{}", json_string(n), syntax.before_arguments))
                    .collect(),
            )),
        },
    };
    Ok(Some(forcing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(c: &mut dyn Constraint, text: &str) {
        assert!(c.allows(text.as_bytes()), "{text}");
        c.advance(text.as_bytes());
    }

    #[test]
    fn named_choice_fixes_the_name_in_the_prompt() {
        let mut f = forcing(&ToolMode::Forced(vec!["read_file".into()]), false, "hermes")
            .unwrap()
            .unwrap();
        assert_eq!(
            f.prefix,
            "<tool_call>\n{\"name\": \"read_file\", \"arguments\": "
        );
        assert!(!f.constraint.allows(b"Sure"));
        drive(f.constraint.as_mut(), "{\"path\": \"a.rs\"}");
        assert!(f.constraint.is_complete());
        let whole = format!("{}{{\"path\": \"a.rs\"}}{}", f.prefix, f.close);
        assert_eq!(whole, "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.rs\"}}\n</tool_call>");
    }

    #[test]
    fn required_lets_the_model_pick_a_declared_name() {
        let mut f = forcing(
            &ToolMode::Forced(vec!["a".into(), "b".into()]),
            false,
            "qwen",
        )
        .unwrap()
        .unwrap();
        assert_eq!(f.prefix, "<tool_call>\n{\"name\": ");
        assert!(!f.constraint.allows(b"\"c\""));
        drive(f.constraint.as_mut(), "\"b\", \"arguments\": {}");
        assert!(f.constraint.is_complete());
    }

    #[test]
    fn json_object_and_unforceable_parsers() {
        assert!(forcing(&ToolMode::Auto, false, "hermes").unwrap().is_none());
        let f = forcing(&ToolMode::Off, true, "hermes").unwrap().unwrap();
        assert!(f.prefix.is_empty() && f.constraint.allows(b"{"));
        let e = forcing(&ToolMode::Forced(vec!["a".into()]), false, "deepseek")
            .err()
            .unwrap();
        assert_eq!(e.shape().param.as_deref(), Some("tool_choice"));
    }
}
