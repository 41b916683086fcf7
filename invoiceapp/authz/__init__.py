"""Authorization: may this principal do this action to this resource?

- policy.py   the whole permission table as data, and can() that reads it
- scope.py    lookups limited to the principal's organizations (404 is decided here)
- enforce.py  authorize(): the 403 and the elevation check at the action boundary
"""
