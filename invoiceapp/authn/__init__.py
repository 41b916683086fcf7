"""Authentication: who is this request from?

The proofs:
- passwords.py        Argon2id hashing and verification
- password_policy.py  which new passwords are accepted (NIST SP 800-63B, zxcvbn)
- totp.py             authenticator-app codes (RFC 6238); recovery_codes.py for the lost phone
- passkeys.py         WebAuthn key pairs; second_factor.py says which factors a user has
- email_codes.py      one-time codes sent by email; magic_links.py for links (a first factor
                      each, bound to the browser that asked: mailed_sign_in.py)
- access_tokens.py    personal access tokens for scripts and the API

Carrying a proof, and guarding it:
- sessions.py   server-side sessions: the proof carried to later requests, and how it was made
- gate.py       the authentication gate: 302 to sign-in for pages, 401 for everything else
- devices.py    device cookies: a stranger's guesses cannot lock the owner out
- counters.py   security counters that a burst cannot outrun (conditional UPDATEs)
- redirects.py  which ``next`` targets are safe to follow
- forms.py      the forms that carry a proof (password, code)

Accounts and recovery:
- accounts.py   setting a password, ending sessions; emails.py for typed addresses
- tokens.py     single-use mailed links; claims.py for taking back a squatted address
- factors.py    removing every second factor when the mailbox proves enough (reset, claim)
- sign_in_methods.py  the methods an account chooses (passwordless), never leaving no way in
- events.py     security events shown to the account holder

Only mechanisms live here: no blueprint, no page, nothing from authz or views. The pages
that use them are in invoiceapp/views/account.
"""
