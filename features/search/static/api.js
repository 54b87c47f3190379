// The clipdex API as the search page uses it: JSON in and out, problem details turned into ApiProblem.

export class ApiProblem extends Error {
  /**
   * @param {number} status HTTP status, 0 when the server could not be reached
   * @param {string} message one sentence for a person
   * @param {{field?: string, message?: string}[]} fields the fields an invalid request named
   * @param {number | null} retryAfter seconds the server asked us to wait
   */
  constructor(status, message, fields = [], retryAfter = null) {
    super(message);
    this.name = "ApiProblem";
    this.status = status;
    this.fields = fields;
    this.retryAfter = retryAfter;
  }
}

function retryAfterSeconds(response) {
  const value = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  return Number.isFinite(value) && value >= 0 ? value : null;
}

async function problemFrom(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // A proxy's HTML error page, say: the status alone has to do.
  }
  const fields = Array.isArray(body.errors) ? body.errors : [];
  const retryAfter = retryAfterSeconds(response);
  let message = typeof body.detail === "string" && body.detail ? body.detail : body.title;
  if (response.status === 429) {
    const wait = retryAfter === null ? "a moment" : `${retryAfter} s`;
    message = `Too many requests. Try again in ${wait}.`;
  } else if (response.status === 400 && fields.length) {
    message = fields.map((error) => `${error.field}: ${error.message}`).join("; ");
    message = `The request was not accepted (${message}).`;
  } else if (response.status >= 500 && !message) {
    message = "The server could not answer just now. Try again shortly.";
  }
  return new ApiProblem(response.status, message || `Request failed (HTTP ${response.status}).`, fields,
    retryAfter);
}

/**
 * Call the API; resolves to the decoded JSON body (null for 204), rejects with ApiProblem, or with
 * the AbortError when `signal` aborted it.
 */
export async function callApi(path, { method = "GET", body, token, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: "omit",
      cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiProblem(0, "clipdex could not be reached. Check the connection and try again.");
  }
  if (!response.ok) throw await problemFrom(response);
  return response.status === 204 ? null : response.json();
}

export function queryString(parameters) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(parameters)) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) query.append(name, String(item));
  }
  return query.toString();
}
