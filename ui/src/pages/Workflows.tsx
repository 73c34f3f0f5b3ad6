import { useQuery } from "@tanstack/react-query";
import { useEffect, useMemo, useRef } from "react";
import { Link, useSearchParams } from "wouter";
import { api } from "../api";
import { Loading, Page, Problem } from "../components/Page";
import type { Workflow } from "../types";

export const UNCATEGORIZED = "Uncategorized";

/** Whether every word of `query` occurs in the workflow's name, description, category or tags. */
export function matches(workflow: Workflow, query: string): boolean {
  const haystack = [workflow.name, workflow.description ?? "", workflow.category ?? "", ...workflow.tags]
    .join(" ")
    .toLowerCase();
  return query
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean)
    .every((word) => haystack.includes(word));
}

/** The workflows by category, categories and workflows in alphabetical order, uncategorized ones last. */
export function byCategory(workflows: Workflow[]): [string, Workflow[]][] {
  const groups = new Map<string, Workflow[]>();
  for (const workflow of workflows) {
    const category = workflow.category ?? UNCATEGORIZED;
    groups.set(category, [...(groups.get(category) ?? []), workflow]);
  }
  return [...groups.entries()]
    .sort(([a], [b]) => (a === UNCATEGORIZED ? 1 : b === UNCATEGORIZED ? -1 : a.localeCompare(b)))
    .map(([category, items]) => [category, items.sort((a, b) => a.name.localeCompare(b.name))]);
}

export function useWorkflows() {
  return useQuery({ queryKey: ["workflows"], queryFn: () => api<Workflow[]>("/api/workflows"), staleTime: 10_000 });
}

function firstParagraph(text: string | null): string {
  return (text ?? "").split(/\n\s*\n/)[0]?.trim() ?? "";
}

export function Workflows() {
  const workflows = useWorkflows();
  const [params, setParams] = useSearchParams();
  const query = params.get("q") ?? "";
  const search = useRef<HTMLInputElement>(null);

  useEffect(() => {
    // "/" jumps to the search box, as on most sites with one.
    const onKey = (event: KeyboardEvent) => {
      const typing = event.target instanceof HTMLElement && event.target.closest("input, textarea, select");
      if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
        event.preventDefault();
        search.current?.focus();
      }
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, []);

  const groups = useMemo(
    () => byCategory((workflows.data ?? []).filter((workflow) => matches(workflow, query))),
    [workflows.data, query],
  );
  const shown = groups.reduce((total, [, items]) => total + items.length, 0);

  return (
    <Page title="Workflows">
      <div className="filters">
        <label className="grow">
          Search workflows <kbd aria-hidden="true">/</kbd>
          <input
            ref={search}
            type="search"
            value={query}
            placeholder="Name, description, category or tag"
            onChange={(event) =>
              setParams(event.target.value ? { q: event.target.value } : {}, { replace: true })
            }
          />
        </label>
      </div>
      <Problem error={workflows.error} title="The workflows could not be loaded." />
      {workflows.isPending ? <Loading what="workflows" /> : null}
      {workflows.data ? (
        <p className="muted" role="status">
          {shown === workflows.data.length
            ? `${shown} workflows`
            : `${shown} of ${workflows.data.length} workflows match`}
        </p>
      ) : null}
      {groups.map(([category, items]) => (
        <section key={category} aria-labelledby={`category-${category}`} className="category">
          <h2 id={`category-${category}`}>{category}</h2>
          <ul className="cards">
            {items.map((workflow) => (
              <li key={workflow.name} className="card workflow-card">
                <h3>
                  <Link href={`/workflows/${encodeURIComponent(workflow.name)}`}>{workflow.name}</Link>
                </h3>
                <p>{firstParagraph(workflow.description) || <span className="muted">No description.</span>}</p>
                <p className="tags">
                  <span className="tag">{workflow.execution_mode}</span>
                  {workflow.schedule ? <span className="tag">⏱ {workflow.schedule}</span> : null}
                  {workflow.tags.map((tag) => (
                    <span key={tag} className="tag">
                      {tag}
                    </span>
                  ))}
                </p>
              </li>
            ))}
          </ul>
        </section>
      ))}
    </Page>
  );
}
