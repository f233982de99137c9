// The page's own behaviour, run once when the page loads (as the citation bridge's js_on_load:
// `element`, `props` and `trigger` are that hidden component's). Nothing here reads or inserts
// document or model text as HTML: markers are made from digits, everything else is attributes.
(() => {
  if (window.graniteLongDoc) return;
  window.graniteLongDoc = true;
  const MARKER = /\[(\d{1,2})\]\u2060/g;  // the server's markers only: they end with a word joiner
  const ANSWERS = [
    // [where, the scope of the result each answer belongs to]
    ['#ask-thread .bot-row', (node, index) => `ask-${index}`],
    ['#custom-output', () => 'custom'],
  ];

  // A click on a citation marker, a source or a page: the server opens it in the viewer.
  let opener = null;  // the marker or source that opened the viewer: closing it goes back there
  document.addEventListener('click', (event) => {
    const target = event.target.closest('[data-cite]');
    if (!target) return;
    event.preventDefault();
    opener = target.getAttribute('data-cite');
    props.value = `${opener}@${Date.now()}`;
    trigger('click');
  }, true);

  function backToOpener() {
    if (!opener) return;
    setTimeout(() => {
      const back = document.querySelector(`[data-cite="${CSS.escape(opener)}"]`);
      if (back) {
        back.scrollIntoView({ block: 'center' });
        back.focus({ preventScroll: true });
      }
    }, 150);
  }

  // A click (or Enter) on the page image zooms it to twice the column's width, the lit passage in
  // view; again, and back.
  function zoom(sheet) {
    sheet.classList.toggle('zoomed');
    const lit = sheet.querySelector('.viewer-mark.selected');
    if (lit && sheet.classList.contains('zoomed')) lit.scrollIntoView({ block: 'center', inline: 'center' });
  }
  document.addEventListener('click', (event) => {
    const sheet = event.target.closest('#viewer .viewer-sheet');
    if (sheet) zoom(sheet);
    if (event.target.closest('#viewer-close')) backToOpener();
  });

  // Escape zooms out first, then closes the viewer (and goes back to what opened it).
  document.addEventListener('keydown', (event) => {
    const sheet = event.target.closest && event.target.closest('#viewer .viewer-sheet');
    if (sheet && (event.key === 'Enter' || event.key === ' ')) {
      event.preventDefault();
      zoom(sheet);
      return;
    }
    if (event.key !== 'Escape') return;
    const zoomed = document.querySelector('#viewer .viewer-sheet.zoomed');
    if (zoomed) {
      zoomed.classList.remove('zoomed');
      return;
    }
    const close = document.querySelector('#viewer-close');
    if (close && close.offsetParent !== null) close.click();
  });

  // Enter on a marker or source works like a click (they are buttons).
  // Ctrl+Enter (Cmd+Enter) runs the task of the tab the cursor is in.
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' || !(event.ctrlKey || event.metaKey)) return;
    const panel = event.target.closest('[role="tabpanel"], .tabitem');
    const run = panel && panel.querySelector('button[id$="-run"]');
    if (run && !run.disabled && run.offsetParent !== null) {
      event.preventDefault();
      run.click();
    }
  });

  // Inline markers [1] in answers become buttons (app/chat.py: nothing the model writes can
  // end with the word joiner that only the server's markers have).
  function upgradeMarkers(container, scope) {
    const walker = document.createTreeWalker(container, NodeFilter.SHOW_TEXT);
    const found = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.parentElement.closest('code, pre, .cite')) continue;
      MARKER.lastIndex = 0;
      if (MARKER.test(node.nodeValue)) found.push(node);
    }
    for (const node of found) {
      const pieces = document.createDocumentFragment();
      let last = 0;
      node.nodeValue.replace(MARKER, (match, number, offset) => {
        pieces.append(node.nodeValue.slice(last, offset));
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'cite';
        button.textContent = `[${number}]`;
        button.setAttribute('data-cite', `${scope}:c:${number}`);
        button.setAttribute('aria-label', `[${number}]: ${document.querySelector('#viewer-title')?.textContent || 'source'}`);
        pieces.append(button);
        last = offset + match.length;
      });
      pieces.append(node.nodeValue.slice(last));
      node.replaceWith(pieces);
    }
  }

  function tidy() {
    for (const [selector, scopeOf] of ANSWERS) {
      document.querySelectorAll(selector).forEach((node, index) => upgradeMarkers(node, scopeOf(node, index)));
    }
    // Text direction follows the text: Arabic questions, answers and passages read right to left.
    // (Gradio writes dir="ltr" on its text boxes: replaced.)
    document.querySelectorAll('textarea:not([dir="auto"]), input[type="text"]:not([dir="auto"]), .message .md:not([dir="auto"])')
      .forEach((node) => node.setAttribute('dir', 'auto'));
    // Result areas are named regions (a screen reader can jump to "Sources", "Summary" ...).
    document.querySelectorAll('[id$="-output"]:not([role]), #ask-thread:not([role]), [id$="-sources"]:not([role])')
      .forEach((node) => {
        const named = node.querySelector('label, [data-testid="block-label"]') || node.closest('.block');
        node.setAttribute('role', 'region');
        node.setAttribute('aria-label', ((named && named.textContent) || node.id).trim().slice(0, 60));
      });
    const upload = document.querySelector('#documents input[type="file"]:not([aria-label])');
    if (upload) upload.setAttribute('aria-label', document.querySelector('#documents label')?.textContent || 'Documents');
  }

  let pending = false;
  new MutationObserver(() => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; tidy(); });
  }).observe(document.body, { childList: true, subtree: true, characterData: true });
  tidy();
})();
