// Text with the query's words marked, built as DOM nodes (text nodes and <mark> elements only).
//
// The API sends each snippet as plain text plus the matches' offsets, and also as `marked` HTML. The
// page never parses API text as HTML: it rebuilds the marks from the offsets, and only when those are
// missing does it read `marked`, after checking that it holds nothing but escaped text and the
// <mark> tags, decoding it into text nodes itself.

const ENTITIES = { "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#x27;": "'", "&#39;": "'" };
const SAFE_MARKED = /^(?:[^<>&]|&(?:amp|lt|gt|quot|#x27|#39);|<mark>|<\/mark>)*$/;

function appendPiece(target, text, marked) {
  if (!text) return;
  if (marked) {
    const mark = document.createElement("mark");
    mark.textContent = text;
    target.append(mark);
  } else {
    target.append(document.createTextNode(text));
  }
}

/** Offsets count Unicode code points (Python string indices), so split the text the same way. */
function fromMatches(target, text, matches) {
  const points = Array.from(text);
  let at = 0;
  const ordered = [...matches].sort((a, b) => a.start - b.start);
  for (const { start, length } of ordered) {
    if (!Number.isInteger(start) || !Number.isInteger(length) || start < at || length <= 0) continue;
    if (start + length > points.length) break;
    appendPiece(target, points.slice(at, start).join(""), false);
    appendPiece(target, points.slice(start, start + length).join(""), true);
    at = start + length;
  }
  appendPiece(target, points.slice(at).join(""), false);
}

function decodeEntities(text) {
  return text.replace(/&(?:amp|lt|gt|quot|#x27|#39);/g, (entity) => ENTITIES[entity]);
}

function fromMarked(target, marked) {
  let inside = false;
  for (const piece of marked.split(/(<\/?mark>)/)) {
    if (piece === "<mark>") inside = true;
    else if (piece === "</mark>") inside = false;
    else appendPiece(target, decodeEntities(piece), inside);
  }
}

/**
 * Fill `target` with a highlight ({snippet or text, marked, matches}) or, when there is none, `fallback`
 * as plain text. Returns how many words were marked.
 */
export function renderHighlight(target, highlight, fallback = "") {
  target.replaceChildren();
  // Search hits carry `snippet`, completions `text`: both with `matches` offsets into it.
  const text = highlight ? (highlight.snippet ?? highlight.text) : undefined;
  if (typeof text === "string" && Array.isArray(highlight.matches)) {
    fromMatches(target, text, highlight.matches);
  } else if (highlight && typeof highlight.marked === "string" && SAFE_MARKED.test(highlight.marked)) {
    fromMarked(target, highlight.marked);
  } else {
    appendPiece(target, fallback, false);
  }
  return target.querySelectorAll("mark").length;
}
