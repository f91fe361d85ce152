"""The dashboard's built front end (`static/`, built by `make web` from `web/`; shipped in the wheel)."""
