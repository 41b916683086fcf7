"""Authentication: who is this request from?

- passwords.py  Argon2id hashing and verification (the proof)
- sessions.py   server-side sessions: the proof carried to later requests
- gate.py       the authentication gate: 302 to sign-in for pages, 401 for everything else
- redirects.py  which ``next`` targets are safe to follow
- views.py      sign-in, sign-out and re-authentication pages
"""
