import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import type { ReactNode } from "react";
import { api } from "../../api";
import { ItemList } from "../../components/ItemList";
import { Page } from "../../components/Page";
import { useSignedIn } from "../../session";

/** An admin page: what it is about, the form that adds or changes an item, and the items (see `ItemList`). */
export function EditableList<Item>({
  title,
  intro,
  form,
  ...list
}: { title: string; intro?: ReactNode; form: ReactNode } & Parameters<typeof ItemList<Item>>[0]) {
  return (
    <Page title={title}>
      {intro}
      {form}
      <ItemList {...list} />
    </Page>
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
