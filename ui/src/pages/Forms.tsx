import { useQuery } from "@tanstack/react-query";
import { Link } from "wouter";
import { api } from "../api";
import { ItemList } from "../components/ItemList";
import { Page } from "../components/Page";
import { useSignedIn } from "../session";
import type { BifrostForm, FormAccess } from "../types";
import { ScopeLabel } from "./admin/AdminOnly";

export function accessLabel(form: Pick<BifrostForm, "access" | "roles">): string {
  const labels: Record<FormAccess, string> = {
    everyone: "everyone",
    roles: `roles: ${form.roles.join(", ")}`,
    platform_admins: "platform admins",
  };
  return labels[form.access];
}

/** Whether the signed-in user may change `form`: its organization's admins, platform admins for every one. */
export function mayChange(form: BifrostForm, isAdmin: boolean, isPlatformAdmin: boolean): boolean {
  return isPlatformAdmin || (isAdmin && form.org_id !== null);
}

export function useForms() {
  return useQuery({ queryKey: ["forms"], queryFn: () => api<BifrostForm[]>("/api/forms") });
}

/** The forms the user may fill in (and, for admins, change), those that no longer fit their workflow flagged
 * with the reasons. */
export default function Forms() {
  const { isAdmin, me } = useSignedIn();
  const forms = useForms();
  return (
    <Page
      title="Forms"
      actions={
        isAdmin ? (
          <Link className="button primary" href="/forms/new">
            New form
          </Link>
        ) : null
      }
    >
      <p className="muted">A form starts one workflow, its fields refined and its choices filled by data providers.</p>
      <ItemList
        items={forms}
        errors={[forms.error]}
        errorTitle="The forms could not be loaded."
        what="forms"
        empty="No forms yet."
        caption="Forms"
        columns={[
          {
            label: "Name",
            cell: (form) => (
              <>
                <Link href={`/forms/${form.id}`}>{form.name}</Link>
                {form.description ? <div className="muted">{form.description}</div> : null}
              </>
            ),
          },
          { label: "Workflow", cell: (form) => <code>{form.workflow}</code> },
          { label: "Scope", cell: (form) => <ScopeLabel orgId={form.org_id} /> },
          { label: "Who may use it", cell: accessLabel },
          {
            label: "State",
            cell: (form) =>
              form.needs_attention ? (
                <div className="attention">
                  <span className="badge status-CompletedWithErrors">Needs attention</span>
                  <ul>
                    {form.problems.map((problem) => (
                      <li key={`${problem.field}:${problem.message}`}>
                        {problem.field ? <code>{problem.field}</code> : null} {problem.message}
                      </li>
                    ))}
                  </ul>
                </div>
              ) : (
                <span className="badge status-Success">Ready</span>
              ),
          },
        ]}
        rowKey={(form) => form.id}
        rowAttributes={(form) => ({ "data-form": form.id })}
        actions={(form) =>
          mayChange(form, isAdmin, me.is_platform_admin) ? (
            <Link className="button small" href={`/forms/${form.id}/edit`}>
              Edit<span className="visually-hidden"> {form.name}</span>
            </Link>
          ) : null
        }
      />
    </Page>
  );
}
