"""Authorization: may this principal do this action to this resource?

- policy.py   the permission tables as data (POLICY per role, SELF_SERVICE for one's own
              account), and can(), the only code that reads them (with allowed_actions(),
              its form for a page's buttons: several actions in one evaluation)
- scope.py    lookups limited to the principal's organizations (404 is decided here)
- enforce.py  authorize(): the 403 and the elevation check at the action boundary
- view_as.py  view as member: starting and ending it, and the gate that refuses writes
- explain.py  the teaching traces and the capabilities page, asking can() like everyone;
              why(), the "Why?" of every 403 page and of /api/v1/authz/explain
- org_security.py  an organization's security policy (which proofs, how old a session,
              its elevation window, invitation domains, API tokens), asked by can()

Support access (invoiceapp/support_access.py, below both packages: requests, grants, expiry)
is one more input to can(): policy.py's SUPPORT_REFUSED and SUPPORT_READ_ONLY_ACTIONS.

The audit log that records each refusal is invoiceapp/audit.py, below both packages.
"""
