import type { ExecutionStatus } from "../types";

const LABELS: Record<ExecutionStatus, string> = {
  Pending: "Pending",
  Running: "Running",
  Success: "Success",
  CompletedWithErrors: "Completed with errors",
  Failed: "Failed",
  Timeout: "Timed out",
  Cancelled: "Cancelled",
};

export function statusLabel(status: ExecutionStatus): string {
  return LABELS[status];
}

export function StatusBadge({ status }: { status: ExecutionStatus }) {
  return (
    <span className={`badge status-${status}`} data-status={status}>
      {LABELS[status]}
    </span>
  );
}
