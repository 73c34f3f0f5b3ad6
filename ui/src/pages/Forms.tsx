import { useQuery } from "@tanstack/react-query";
import { Link } from "wouter";
import { api } from "../api";
import { Loading, Page, Problem } from "../components/Page";
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
      <Problem error={forms.error} title="The forms could not be loaded." />
      {forms.isPending ? <Loading what="forms" /> : null}
      {forms.data?.length === 0 ? <p className="muted">No forms yet.</p> : null}
      {forms.data?.length ? (
        <table className="responsive">
          <caption className="visually-hidden">Forms</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Workflow</th>
              <th scope="col">Scope</th>
              <th scope="col">Who may use it</th>
              <th scope="col">State</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {forms.data.map((form) => (
              <tr key={form.id} data-form={form.id}>
                <td data-label="Name">
                  <Link href={`/forms/${form.id}`}>{form.name}</Link>
                  {form.description ? <div className="muted">{form.description}</div> : null}
                </td>
                <td data-label="Workflow">
                  <code>{form.workflow}</code>
                </td>
                <td data-label="Scope">
                  <ScopeLabel orgId={form.org_id} />
                </td>
                <td data-label="Who may use it">{accessLabel(form)}</td>
                <td data-label="State">
                  {form.needs_attention ? (
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
                  )}
                </td>
                <td className="row-actions">
                  {mayChange(form, isAdmin, me.is_platform_admin) ? (
                    <Link className="button small" href={`/forms/${form.id}/edit`}>
                      Edit<span className="visually-hidden"> {form.name}</span>
                    </Link>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </Page>
  );
}
