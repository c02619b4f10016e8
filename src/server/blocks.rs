//! Assistant-message deltas → typed content blocks, for the dialects whose answers are a
//! list of blocks (Anthropic `content`, Responses `output` items): thinking, text, and one
//! block per tool call. A block opens with its first real text and closes when another
//! kind starts or the answer ends, so the stream can say start / delta / stop and the
//! whole answer is the same events folded. One code path for streaming and whole answers.
//!
//! Whitespace follows the chat path's parser contract: with a tool parser active, text
//! and thinking are trimmed at both ends (a text block holding only the newline before a
//! call is never opened); thinking is always trimmed; plain text without tools is verbatim.
//! Must not depend on axum.

use super::assemble::Delta;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockKind {
    Thinking,
    Text,
    /// A tool call; its text is the JSON arguments, in fragments.
    Call {
        id: String,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockEvent {
    Start { index: usize, kind: BlockKind },
    Delta { index: usize, text: String },
    Stop { index: usize },
}

/// Which kind of block is open, and its position among the blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Thinking(usize),
    Text(usize),
    Call(usize),
}

pub struct Blocks {
    open: Option<Open>,
    next: usize,
    /// Trim text (a tool parser is active); thinking is always trimmed.
    trim_text: bool,
    /// Trailing whitespace of the open text/thinking block, held until more text follows.
    held: String,
}

impl Blocks {
    pub fn new(trim_text: bool) -> Self {
        Blocks {
            open: None,
            next: 0,
            trim_text,
            held: String::new(),
        }
    }

    pub fn push(&mut self, delta: Delta, out: &mut Vec<BlockEvent>) {
        match delta {
            Delta::Content(t) => {
                let trim = self.trim_text;
                self.text(t, trim, false, out)
            }
            Delta::Reasoning(t) => self.text(t, true, true, out),
            Delta::CallStart { id, name, .. } => {
                self.close(out);
                let index = self.begin(Open::Call);
                out.push(BlockEvent::Start {
                    index,
                    kind: BlockKind::Call { id, name },
                });
            }
            Delta::CallArguments { text, .. } => {
                if let Some(Open::Call(index)) = self.open {
                    if !text.is_empty() {
                        out.push(BlockEvent::Delta { index, text });
                    }
                }
            }
        }
    }

    /// The end of the answer: closes the open block.
    pub fn finish(&mut self, out: &mut Vec<BlockEvent>) {
        self.close(out);
    }

    fn text(&mut self, t: String, trim: bool, thinking: bool, out: &mut Vec<BlockEvent>) {
        let index = match (self.open, thinking) {
            (Some(Open::Thinking(i)), true) | (Some(Open::Text(i)), false) => i,
            _ => {
                let body = if trim { t.trim_start() } else { t.as_str() };
                if body.is_empty() {
                    return;
                }
                self.close(out);
                let kind = if thinking {
                    BlockKind::Thinking
                } else {
                    BlockKind::Text
                };
                let index = self.begin(if thinking { Open::Thinking } else { Open::Text });
                out.push(BlockEvent::Start { index, kind });
                let body = body.to_owned();
                self.emit(index, body, trim, out);
                return;
            }
        };
        self.emit(index, t, trim, out);
    }

    /// Emits text into an open block, holding back trailing whitespace when trimming.
    fn emit(&mut self, index: usize, t: String, trim: bool, out: &mut Vec<BlockEvent>) {
        if !trim {
            if !t.is_empty() {
                out.push(BlockEvent::Delta { index, text: t });
            }
            return;
        }
        self.held.push_str(&t);
        let end = self.held.trim_end().len();
        if end > 0 {
            let rest = self.held.split_off(end);
            let text = std::mem::replace(&mut self.held, rest);
            out.push(BlockEvent::Delta { index, text });
        }
    }

    fn begin(&mut self, open: fn(usize) -> Open) -> usize {
        let index = self.next;
        self.next += 1;
        self.open = Some(open(index));
        index
    }

    fn close(&mut self, out: &mut Vec<BlockEvent>) {
        self.held.clear();
        if let Some(Open::Thinking(index) | Open::Text(index) | Open::Call(index)) =
            self.open.take()
        {
            out.push(BlockEvent::Stop { index });
        }
    }
}

/// A finished block, for whole (non-streaming) answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub kind: BlockKind,
    pub text: String,
}

/// Folds block events into the finished blocks.
#[derive(Debug, Default)]
pub struct BlockList {
    pub blocks: Vec<Block>,
}

impl BlockList {
    pub fn apply(&mut self, event: BlockEvent) {
        match event {
            BlockEvent::Start { kind, .. } => self.blocks.push(Block {
                kind,
                text: String::new(),
            }),
            BlockEvent::Delta { index, text } => {
                if let Some(b) = self.blocks.get_mut(index) {
                    b.text.push_str(&text);
                }
            }
            BlockEvent::Stop { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(deltas: Vec<Delta>, trim: bool) -> (Vec<Block>, Vec<BlockEvent>) {
        let mut b = Blocks::new(trim);
        let mut events = Vec::new();
        for d in deltas {
            b.push(d, &mut events);
        }
        b.finish(&mut events);
        let mut list = BlockList::default();
        events.iter().cloned().for_each(|e| list.apply(e));
        (list.blocks, events)
    }

    fn call(index: usize, name: &str) -> Delta {
        Delta::CallStart {
            index,
            id: format!("call_{index}"),
            name: name.into(),
        }
    }

    fn args(index: usize, text: &str) -> Delta {
        Delta::CallArguments {
            index,
            text: text.into(),
        }
    }

    #[test]
    fn splits_thinking_text_and_calls_into_blocks() {
        let (blocks, events) = fold(
            vec![
                Delta::Reasoning("\nhmm, ".into()),
                Delta::Reasoning("a file\n".into()),
                Delta::Content("\n\n".into()),
                Delta::Content("Let me ".into()),
                Delta::Content("look.\n".into()),
                call(0, "read"),
                args(0, "{\"path\":"),
                args(0, " \"a\"}"),
                Delta::Content("\n".into()),
                call(1, "list"),
                args(1, "{}"),
            ],
            true,
        );
        let kinds: Vec<_> = blocks.iter().map(|b| (&b.kind, b.text.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (&BlockKind::Thinking, "hmm, a file"),
                (&BlockKind::Text, "Let me look."),
                (
                    &BlockKind::Call {
                        id: "call_0".into(),
                        name: "read".into()
                    },
                    "{\"path\": \"a\"}"
                ),
                (
                    &BlockKind::Call {
                        id: "call_1".into(),
                        name: "list".into()
                    },
                    "{}"
                ),
            ]
        );
        let starts = events
            .iter()
            .filter(|e| matches!(e, BlockEvent::Start { .. }))
            .count();
        let stops = events
            .iter()
            .filter(|e| matches!(e, BlockEvent::Stop { .. }))
            .count();
        assert_eq!((starts, stops), (4, 4));
        assert_eq!(events.last(), Some(&BlockEvent::Stop { index: 3 }));
    }

    #[test]
    fn plain_text_without_tools_is_verbatim() {
        let (blocks, _) = fold(
            vec![
                Delta::Content("  x = 1\n".into()),
                Delta::Content("\n".into()),
            ],
            false,
        );
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].text, "  x = 1\n\n");
    }

    #[test]
    fn no_blocks_for_empty_output() {
        let (blocks, events) = fold(vec![Delta::Content(" \n".into())], true);
        assert!(blocks.is_empty() && events.is_empty());
    }
}
