"""Web endpoints edition serves itself (ASGI apps); today the unsubscribe server."""
