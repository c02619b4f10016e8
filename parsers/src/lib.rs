//! wick-parsers: turns raw model output into content, reasoning and tool calls.
//! (Being written: see the parsers issue.)
