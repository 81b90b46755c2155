"""What a running process holds beside the app: the shared services (`services.Services`:
database, clients, limiters, cipher), logging, metrics, the start-up checks (`preflight`) and
the cipher of secrets at rest (`crypto`)."""
