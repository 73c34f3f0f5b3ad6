// An execution's log as it streams in: lines kept in order without duplicates (a reconnected stream starts over
// from the first line), shown as fixed-height rows (a message of several lines takes several rows), and handed
// to the view at most once per frame however fast they arrive.

import type { LogLine } from "./types";

export interface LogRow {
  /** The log line this row shows (part of). */
  entry: LogLine;
  /** 0 for the row that starts the line; its further rows carry only the message's next lines. */
  part: number;
  text: string;
}

export type Scheduler = (flush: () => void) => void;

const nextFrame: Scheduler = (flush) => {
  if (typeof requestAnimationFrame === "function" && !document.hidden) requestAnimationFrame(flush);
  else setTimeout(flush, 50);
};

export class LogStore {
  readonly rows: LogRow[] = [];
  /** How many log lines `rows` holds. */
  lineCount = 0;
  version = 0;
  private pending: LogLine[] = [];
  private lastLine = 0;
  private scheduled = false;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly schedule: Scheduler = nextFrame) {}

  /** Takes a line unless it was already taken; returns whether it was new. */
  add(line: LogLine): boolean {
    if (line.line <= this.lastLine) return false;
    this.lastLine = line.line;
    this.pending.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(this.flush);
    }
    return true;
  }

  /** Moves the lines taken since the last flush into `rows` and tells the view. */
  readonly flush = (): void => {
    this.scheduled = false;
    if (!this.pending.length) return;
    for (const entry of this.pending) {
      const parts = entry.message.split("\n");
      for (let part = 0; part < parts.length; part++) this.rows.push({ entry, part, text: parts[part] ?? "" });
    }
    this.lineCount += this.pending.length;
    this.pending = [];
    this.version++;
    for (const listener of this.listeners) listener();
  };

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  readonly getVersion = (): number => this.version;

  /** The log as plain text, one line per record. */
  text(): string {
    const lines: string[] = [];
    for (const row of this.rows) {
      lines.push(row.part === 0 ? `${row.entry.ts} ${row.entry.level} ${row.entry.logger}: ${row.text}` : row.text);
    }
    return `${lines.join("\n")}\n`;
  }
}
