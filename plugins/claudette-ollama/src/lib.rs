//! Ollama native /api/chat (NDJSON) as a Claudette provider.
