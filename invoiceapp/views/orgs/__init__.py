"""Organization pages: create, settings, members, invitations, billing, ownership.

One blueprint, ``orgs``, in modules named for what they hold:

- common.py       the blueprint; the member lookup, the lock and re-check, redirects
- forms.py        the forms, and the roles and plans they offer
- settings.py     switch, create, overview, settings, leave
- members.py      the members page: roles, removals, members' API tokens
- invitations.py  invite, revoke, resend (accepting is views/invitations.py)
- ownership.py    transfer of ownership
- billing.py      the plan
- roles.py        custom roles: the organization's own roles (owner only)
- access.py       access review: who may do what to an invoice, what one member may do

Forms read only their own fields, so an ``organization_id``, ``owner`` or ``plan``
posted alongside changes nothing (mass assignment). Flash messages name no people and
no organizations: they travel in a readable cookie.
"""

from . import access, billing, invitations, members, ownership, roles, settings  # noqa: F401
from .common import bp

__all__ = ["bp"]
