"""`narrator serve`: our engine behind an OpenAI-compatible speech API (vLLM-Omni's extensions included).

Routes: POST /v1/audio/speech, GET/POST /v1/audio/voices, DELETE /v1/audio/voices/{name}, GET /v1/models,
GET /health, GET /metrics, and /v1/narrator/* (the rest of the Engine protocol, for the bot's RemoteEngine).
Build with `bot.serve.app.build_app(engine, ServeConfig(...))`."""
