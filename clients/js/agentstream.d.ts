// Types for agentstream.js. Event payloads mirror the server's msgspec union (shared/events.py).

export interface RetrieverSummary {
  used_retrievers: boolean; retriever_count: number; saved_retrievers: number;
  adhoc_retrievers: number; total_documents: number; executions: Record<string, unknown>[];
}

export interface EventPayloads {
  intent: { intent: string; confidence: number; category: string; reasoning: string; context_scope: string };
  thinking: { step: string; message: string };
  tool_call: { tool_name: string; tool_call_id: string; inputs: Record<string, unknown> };
  tool_result: { tool_name: string; tool_call_id: string; success: boolean; output: unknown; latency_ms: number; error?: string | null };
  token: { content: string };
  message: { content: string; message_id: string; is_final: boolean };
  session_name: { session_name: string };
  done: { latency_ms: number; tool_calls_made: number; message_id: string; retriever_summary: RetrieverSummary;
          data_accessed_via_retriever: boolean; total_tokens?: number };
  error: { message: string; recoverable: boolean; code?: string | null; message_id?: string | null };
  retriever_execution: { tool_name: string; execution_id: string; retriever_id: string | null; is_adhoc: boolean;
                         documents_returned: number; latency_ms: number; message: string };
  pipeline_config: { tool_name: string; config: Record<string, unknown>; message: string };
  confirmation_required: { confirmation_id: string; tool_name: string; inputs: Record<string, unknown>;
                           expires_at: string; message?: string };
  reset: { reason: "cursor_expired" | "cursor_ahead" | "stream_expired" | "stream_lost" | "message_expired"
                   | "retry" | "compacted" | string;
           status: string; replay_from: string; attempt?: number; discard_after?: string | null };
}

export type EventType = keyof EventPayloads;

/** A kept event of the message, delivered once, in order. */
export type AgentEvent = {
  [K in Exclude<EventType, "reset">]: { id: string; type: K; data: EventPayloads[K]; receivedAt: number };
}[Exclude<EventType, "reset">];

/** A server reset applied for the application: discard the events named in `retracted`. */
export interface ResetEvent { id: string; type: "reset"; data: EventPayloads["reset"]; retracted: string[]; receivedAt: number }

/** The client's own connection state (no id; not part of the message's log). */
export interface ConnectionEvent { id: null; type: "connection"; data: { state: "open" | "reconnecting"; attempt: number }; receivedAt: number }

export type StreamEvent = AgentEvent | ResetEvent | ConnectionEvent;
export type TerminalEvent = Extract<AgentEvent, { type: "done" | "error" | "confirmation_required" }>;

export class ApiError extends Error {
  status: number; code: string | null; type: string | null; details: Record<string, unknown>; headers: Record<string, string>;
  constructor(status: number, message: string, opts?: { code?: string | null; type?: string | null; details?: Record<string, unknown>; headers?: Record<string, string> });
  static fromResponse(res: Response): Promise<ApiError>;
}

export class ConnectionLost extends Error {}

export interface StreamOptions { signal?: AbortSignal; onReset?: (reset: ResetEvent) => void }

export class MessageStream implements AsyncIterable<StreamEvent> {
  readonly sessionId: string;
  /** Known after the first response. */
  messageId: string | null;
  /** The cursor: the id of the last event that came over the wire. */
  lastEventId: string | null;
  idempotencyKey: string | null;
  streamToken: string | null;
  connections: number;
  /** The terminal event (or the confirmation_required the answer paused on); null after a 204. */
  readonly result: Promise<TerminalEvent | null>;
  close(): void;
  [Symbol.asyncIterator](): AsyncIterator<StreamEvent>;
}

export interface ClientOptions {
  baseUrl?: string; apiKey?: string; namespace?: string; fetch?: typeof fetch; maxRetries?: number;
  /** A stream token (X-Stream-Token) for the events URL, sent as ?access_token=. */
  streamToken?: string;
}

export class AgentStreamClient {
  constructor(opts?: ClientOptions);
  readonly baseUrl: string; apiKey?: string; namespace?: string; maxRetries: number;
  createSession(body?: Record<string, unknown>): Promise<any>;
  getSession(id: string): Promise<any>;
  listSessions(body?: Record<string, unknown>): Promise<any>;
  updateSession(id: string, body: Record<string, unknown>): Promise<any>;
  deleteSession(id: string): Promise<any>;
  getHistory(id: string): Promise<any>;
  submitFeedback(id: string, body: Record<string, unknown>): Promise<any>;
  send(sessionId: string, content: string, opts?: StreamOptions & { idempotencyKey?: string; metadata?: Record<string, unknown> }): MessageStream;
  sendAndWait(sessionId: string, content: string, opts?: { idempotencyKey?: string; signal?: AbortSignal; metadata?: Record<string, unknown> }): Promise<any>;
  follow(sessionId: string, messageId: string, opts?: StreamOptions & { lastEventId?: string; streamToken?: string }): MessageStream;
  sessionEvents(sessionId: string, opts?: StreamOptions & { lastEventId?: string }): AsyncIterable<(AgentEvent | ResetEvent) & { messageId: string }>;
  cancel(sessionId: string, messageId: string): Promise<any>;
  respondToConfirmation(sessionId: string, confirmationId: string, body: { approved: boolean } & Record<string, unknown>,
                        opts?: StreamOptions & { pausedAt?: string }): MessageStream;
  request(method: string, path: string, body?: unknown, opts?: { headers?: Record<string, string>; retry?: boolean; signal?: AbortSignal }): Promise<any>;
}

export class SSEParser {
  retryMs: number | null;
  feed(text: string): { id: string | null; event: string; data: string }[];
}

export class Reconciler {
  feed(id: string, type: string, data: unknown, fromStart: boolean): { out: { id: string; type: string; data: unknown; retracted: string[] }[]; restart: boolean };
}

export function parseId(raw: string): [bigint, bigint];
export function compareIds(a: string, b: string): -1 | 0 | 1;
