"""Authentication: who is this request from?

- passwords.py  Argon2id hashing and verification (the proof)
- sessions.py   server-side sessions: the proof carried to later requests
- gate.py       the authentication gate: 302 to sign-in for pages, 401 for everything else
- redirects.py  which ``next`` targets are safe to follow
- forms.py      the forms that carry a proof (password, code)

Only mechanisms live here: no blueprint, no page, nothing from authz or views. The pages
that use them are in invoiceapp/views/account.
"""
