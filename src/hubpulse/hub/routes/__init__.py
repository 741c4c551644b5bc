"""HTTP routes of the replay Hub, one module per Hub surface; app.py includes each router."""
