"""Every page under /account, and the pages where an account is proven or recovered.

The mechanisms (passwords, sessions, codes, passkeys, mailed tokens) live in
invoiceapp/authn; these modules are only the pages that use them.

- sign_in.py     sign-in and its second step, sign-out, re-authentication (blueprint "authn")
- email_sign_in.py  sign-in by a code or a magic link sent by email
- signup.py      sign-up and email verification
- recovery.py    forgot / reset password
- two_factor.py  authenticator app, recovery codes and passkeys
- settings.py    /account: profile, password, email, sessions, security events
- sign_in_methods.py  /account/security: how this session was proven, the methods chosen
- tokens.py      /account/tokens: personal access tokens for the API
- links.py       what every page reached through a mailed link shares
"""
