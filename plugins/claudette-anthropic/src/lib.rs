//! Anthropic Messages API as a Claudette provider.
