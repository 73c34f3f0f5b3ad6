import type { ReactNode } from "react";
import { Page } from "../../components/Page";
import { useSignedIn } from "../../session";

/** The page for admins of the organization acted for; anyone else learns only that it is not for them. */
export function AdminOnly({ title, children }: { title: string; children: ReactNode }) {
  const { isAdmin, org } = useSignedIn();
  if (!isAdmin) {
    return (
      <Page title={title}>
        <p className="problem" role="alert">
          Only admins of {org ? org.name : "an organization"} may see this page.
        </p>
      </Page>
    );
  }
  return <>{children}</>;
}

/** Where an entry lives: the organization acted for, or global (every organization's fallback). */
export function ScopeLabel({ orgId }: { orgId: string | null }) {
  return orgId === null ? <span className="tag">global</span> : <span className="tag">this organization</span>;
}
