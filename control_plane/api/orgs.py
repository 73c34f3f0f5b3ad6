"""Organizations and their members over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from control_plane.api.dependencies import PlatformAdminDep, ServicesDep, UserDep, client_address
from control_plane.api.models.orgs import MemberIn, MemberOut, OrgIn, OrgOut
from control_plane.security import organizations

router = APIRouter(prefix="/api/orgs", tags=["organizations"])


@router.get("")
def list_orgs(services: ServicesDep, user: UserDep) -> list[OrgOut]:
    """Every organization for platform admins; the caller's own for anyone else."""
    return [OrgOut.of(org) for org in organizations.list_orgs(services.db_engine, user)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_org(body: OrgIn, request: Request, services: ServicesDep, user: PlatformAdminDep) -> OrgOut:
    return OrgOut.of(organizations.create_org(services.db_engine, user, body.name, ip=client_address(request)))


@router.get("/{org_id}")
def get_org(org_id: str, services: ServicesDep, user: UserDep) -> OrgOut:
    return OrgOut.of(organizations.get_org(services.db_engine, user, org_id))


@router.patch("/{org_id}")
def rename_org(org_id: str, body: OrgIn, request: Request, services: ServicesDep, user: PlatformAdminDep) -> OrgOut:
    renamed = organizations.rename_org(services.db_engine, user, org_id, body.name, ip=client_address(request))
    return OrgOut.of(renamed)


@router.get("/{org_id}/members")
def list_members(org_id: str, services: ServicesDep, user: UserDep) -> list[MemberOut]:
    return [MemberOut.of(member) for member in organizations.list_members(services.db_engine, user, org_id)]


@router.put("/{org_id}/members/{user_id}")
def set_member(
    org_id: str, user_id: str, body: MemberIn, request: Request, services: ServicesDep, user: UserDep
) -> MemberOut:
    """Change a member's role. Platform admins may also add any user to the organization."""
    member = organizations.set_member(
        services.db_engine, user, org_id, user_id, body.role, ip=client_address(request)
    )
    return MemberOut.of(member)


@router.delete("/{org_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(org_id: str, user_id: str, request: Request, services: ServicesDep, user: UserDep) -> Response:
    organizations.remove_member(services.db_engine, user, org_id, user_id, ip=client_address(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
