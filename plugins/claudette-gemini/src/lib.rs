//! Google Gemini generateContent as a Claudette provider.
