import type { UseQueryResult } from "@tanstack/react-query";
import type { ReactNode } from "react";
import { Loading, Problem } from "./Page";

export interface Column<Item> {
  label: string;
  cell: (item: Item) => ReactNode;
}

type RowAttributes = { className?: string } & { [data: `data-${string}`]: string };

/** Loaded items as a table, one row each, with the buttons that act on it in the last column; on a phone, each
 * row a card whose cells are labelled. */
export function ItemList<Item>({
  items,
  errors,
  errorTitle,
  what,
  empty,
  caption,
  columns,
  rowKey,
  rowAttributes,
  actions,
}: {
  items: UseQueryResult<Item[]>;
  /** What failed while loading the items or acting on one. */
  errors: unknown[];
  errorTitle?: string;
  /** What is loading, as in "Loading secrets…". */
  what: string;
  /** What is said when there is no item. */
  empty?: string;
  caption: string;
  columns: Column<Item>[];
  rowKey: (item: Item) => string;
  rowAttributes?: (item: Item) => RowAttributes;
  actions: (item: Item) => ReactNode;
}) {
  return (
    <>
      <Problem error={errors.find(Boolean)} title={errorTitle} />
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
              <tr key={rowKey(item)} {...rowAttributes?.(item)}>
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
    </>
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
