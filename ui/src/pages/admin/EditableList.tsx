import { type UseQueryResult, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import type { ReactNode } from "react";
import { api } from "../../api";
import { Loading, Page, Problem } from "../../components/Page";
import { useSignedIn } from "../../session";

export interface Column<Item> {
  label: string;
  cell: (item: Item) => ReactNode;
}

/** An admin page: what it is about, the form that adds or changes an item, and the items in a table, each with
 * the buttons that act on it. */
export function EditableList<Item>({
  title,
  intro,
  form,
  items,
  errors,
  what,
  empty,
  caption,
  columns,
  rowKey,
  actions,
}: {
  title: string;
  intro?: ReactNode;
  form: ReactNode;
  items: UseQueryResult<Item[]>;
  /** What failed while loading the items or acting on one. */
  errors: unknown[];
  /** What is loading, as in "Loading secrets…". */
  what: string;
  /** What the page says when there is no item. */
  empty?: string;
  caption: string;
  columns: Column<Item>[];
  rowKey: (item: Item) => string;
  actions: (item: Item) => ReactNode;
}) {
  return (
    <Page title={title}>
      {intro}
      {form}
      <Problem error={errors.find(Boolean)} />
      {items.isPending ? <Loading what={what} /> : null}
      {items.data?.length === 0 && empty ? <p className="muted">{empty}</p> : null}
      {items.data?.length ? (
        <table className="responsive">
          <caption className="visually-hidden">{caption}</caption>
          <thead>
            <tr>
              {columns.map((column) => (
                <th scope="col" key={column.label}>
                  {column.label}
                </th>
              ))}
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {items.data.map((item) => (
              <tr key={rowKey(item)}>
                {columns.map((column) => (
                  <td data-label={column.label} key={column.label}>
                    {column.cell(item)}
                  </td>
                ))}
                <td className="row-actions">{actions(item)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </Page>
  );
}

/** A button that removes something once the admin confirmed `question`; `label` is its text, `name` what it
 * removes (for screen readers, which read every row's button). */
export function RemoveButton({
  label,
  name,
  question,
  onConfirmed,
}: {
  label: string;
  name: string;
  question: string;
  onConfirmed: () => void;
}) {
  return (
    <button
      type="button"
      className="small danger"
      onClick={() => {
        if (window.confirm(question)) onConfirmed();
      }}
    >
      {label}
      <span className="visually-hidden"> {name}</span>
    </button>
  );
}

export interface ScopedEntry {
  name: string;
  org_id: string | null;
}

/** The named entries of `/api/{area}` (secrets, config): of the organization acted for, or global. */
export function useScopedEntries<Entry extends ScopedEntry>(area: "secrets" | "config") {
  const client = useQueryClient();
  const { me } = useSignedIn();
  const refresh = () => client.invalidateQueries({ queryKey: [area] });
  const path = (name: string) => `/api/${area}/${encodeURIComponent(name)}`;
  const entries = useQuery({ queryKey: [area], queryFn: () => api<Entry[]>(`/api/${area}`) });
  const save = useMutation({
    mutationFn: ({ name, value, global }: { name: string; value: unknown; global: boolean }) =>
      api<Entry>(path(name), { method: "PUT", body: { value }, query: { global: global || undefined } }),
    onSuccess: refresh,
  });
  const remove = useMutation({
    mutationFn: (entry: Entry) =>
      api<void>(path(entry.name), { method: "DELETE", query: { global: entry.org_id === null || undefined } }),
    onSuccess: refresh,
  });
  /** Global entries are platform admins' to change. */
  const mayChange = (entry: Entry) => entry.org_id !== null || me.is_platform_admin;
  return { entries, save, remove, mayChange };
}

export const NAME_PATTERN = "[A-Za-z0-9_.\\-]+";

/** An entry's name: letters, digits, _ . and -. */
export function NameField({ value, onChange }: { value: string; onChange: (name: string) => void }) {
  return (
    <label>
      Name
      <input
        required
        pattern={NAME_PATTERN}
        title="Letters, digits, _ . and -"
        value={value}
        onChange={(event) => onChange(event.target.value)}
      />
    </label>
  );
}

/** Whether the entry is global, for platform admins (nothing for anyone else). */
export function GlobalField({ checked, onChange }: { checked: boolean; onChange: (global: boolean) => void }) {
  const { me } = useSignedIn();
  if (!me.is_platform_admin) return null;
  return (
    <label className="checkbox">
      <input type="checkbox" checked={checked} onChange={(event) => onChange(event.target.checked)} />
      Global (the fallback of every organization)
    </label>
  );
}
