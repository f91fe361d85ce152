// Talking to the server: same origin, the session cookie, the CSRF token on changes.

export interface Session {
  scope: "admin" | "ingest" | "read";
  tenant: string | null;
  name: string | null;
  csrf: string | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let csrf: string | null = null;

export function setCsrf(token: string | null): void {
  csrf = token;
}

export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const options: RequestInit = { method: init.method ?? "GET", credentials: "same-origin", headers };
  if (init.body !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(init.body);
  }
  if (options.method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, options);
  if (response.status === 401 && !location.pathname.startsWith("/login")) {
    location.assign("/login");
    throw new ApiError(401, "not logged in");
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: text };
  }
  if (!response.ok) {
    const message = (data as { error?: string } | null)?.error ?? `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return data as T;
}

export async function session(): Promise<Session | null> {
  try {
    const s = await api<Session>("/api/v1/dashboard/session");
    setCsrf(s.csrf);
    return s;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}
