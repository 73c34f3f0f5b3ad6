"""Data providers: the options of form fields, computed per organisation when the form opens."""

from bifrost import context, data_provider

_DEPARTMENTS = {
    None: ["IT", "Finance", "Sales", "Operations"],
}

_MANAGERS = {
    "IT": [("ada@example.com", "Ada Lovelace", "Head of IT"), ("linus@example.com", "Linus Torvalds", "Platform")],
    "Finance": [("grace@example.com", "Grace Hopper", "Head of Finance")],
    "Sales": [("margaret@example.com", "Margaret Hamilton", "Head of Sales")],
    "Operations": [("alan@example.com", "Alan Turing", "Head of Operations")],
}


@data_provider(name="departments", description="Departments of the current org", cache_ttl_seconds=600)
async def departments() -> list[dict[str, str]]:
    names = _DEPARTMENTS.get(context.org_id, _DEPARTMENTS[None])
    return [{"label": name, "value": name} for name in names]


@data_provider(category="Licensing")
async def licence_skus(include_trials: bool = False) -> list[dict[str, str]]:
    """Licence plans that can be assigned to users.

    Args:
        include_trials: Also list trial plans.
    """
    skus = [("Business Basic", "O365_BUSINESS_ESSENTIALS"), ("Business Premium", "SPB")]
    if include_trials:
        skus.append(("Business Premium (trial)", "SPB_TRIAL"))
    return [{"label": label, "value": value} for label, value in skus]


@data_provider(category="User Management", cache_ttl_seconds=600)
async def managers(department: str) -> list[dict[str, str]]:
    """The people who manage a department: a form's second dropdown, filled from its first.

    Args:
        department: The department whose managers are listed.
    """
    return [
        {"value": email, "label": name, "description": role} for email, name, role in _MANAGERS.get(department, [])
    ]
