import { useQuery } from "@tanstack/react-query";
import { api } from "../api";
import { Loading, Page, Problem } from "../components/Page";
import type { WorkspaceProblem } from "../types";

/** For authors: what keeps files of the workspace from registering their workflows, by file and line. */
export default function WorkspaceErrors() {
  const problems = useQuery({
    queryKey: ["workspace-errors"],
    queryFn: () => api<WorkspaceProblem[]>("/api/workspace/errors"),
    refetchInterval: 5000,
  });
  return (
    <Page title="Workspace errors">
      <p className="muted">
        Syntax errors, bad decorators and duplicate names keep a file's workflows from registering. This list follows
        the workspace as it changes.
      </p>
      <Problem error={problems.error} />
      {problems.isPending ? <Loading what="workspace errors" /> : null}
      {problems.data?.length === 0 ? (
        <p className="notice" role="status">
          Every workspace file registered cleanly.
        </p>
      ) : null}
      {problems.data?.length ? (
        <ul className="problems">
          {problems.data.map((problem) => (
            <li key={`${problem.file}:${problem.line}:${problem.message}`} className="card">
              <code className="location">
                {problem.file}
                {problem.line === null ? "" : `:${problem.line}`}
              </code>
              <pre>{problem.message}</pre>
            </li>
          ))}
        </ul>
      ) : null}
    </Page>
  );
}
