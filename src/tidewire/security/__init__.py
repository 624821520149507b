"""Authentication (JWT), token minting, browser-facing HTTP defences and TLS."""
