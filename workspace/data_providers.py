"""Data providers: the options of form fields, computed per organisation when the form opens."""

from bifrost import context, data_provider

_DEPARTMENTS = {
    None: ["IT", "Finance", "Sales", "Operations"],
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
