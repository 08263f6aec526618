//! self-hosted Qwen on OpenAI-compatible servers (vLLM, llama.cpp, SGLang) with adaptive timeouts as a Claudette provider.
