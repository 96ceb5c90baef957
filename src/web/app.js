// hookd's pages, kept current over Server-Sent Events. Every page is complete
// without this script; it only follows a running build's log and redraws the
// tables when a build changes. No framework, nothing loaded from elsewhere.
(function () {
  'use strict';

  // Marks the page while its stream is connected (tests wait for it before they
  // change anything the page should show).
  function connected(source) {
    source.addEventListener('open', function () {
      document.documentElement.dataset.live = 'open';
    });
    source.addEventListener('error', function () {
      document.documentElement.dataset.live = 'reconnecting';
    });
    return source;
  }

  function isFinal(status) {
    return status !== 'queued' && status !== 'running';
  }

  // Replaces the elements with these ids by their copies in a fresh render of this
  // page (the server's HTML, escaped there).
  function redraw(ids) {
    return fetch(location.href, { headers: { Accept: 'text/html' } })
      .then(function (reply) {
        return reply.ok ? reply.text() : Promise.reject(reply.status);
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, 'text/html');
        ids.forEach(function (id) {
          var now = document.getElementById(id);
          var next = fresh.getElementById(id);
          if (now && next) {
            now.replaceWith(document.importNode(next, true));
          }
        });
      })
      .catch(function () {});
  }

  // A build page: append the log as it grows, from where the page ends, and redraw
  // the details when the status changes. A reconnect resumes at the last byte
  // received (the browser sends it as Last-Event-ID).
  function followLog(log) {
    if (isFinal(log.dataset.status)) {
      return;
    }
    var url = '/builds/' + log.dataset.build + '/events?from=' + log.dataset.from;
    var source = connected(new EventSource(url));
    source.addEventListener('log', function (e) {
      var bottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
      log.appendChild(document.createTextNode(JSON.parse(e.data)));
      log.dataset.from = e.lastEventId;
      if (bottom) {
        window.scrollTo(0, document.body.scrollHeight);
      }
    });
    source.addEventListener('status', function () {
      redraw(['build']);
    });
    source.addEventListener('end', function (e) {
      source.close();
      document.documentElement.dataset.live = 'ended';
      log.dataset.status = JSON.parse(e.data).status;
      redraw(['build']);
    });
  }

  // The overview and feed pages: redraw their tables when any build changes (at
  // most a few times a second).
  function followBuilds(ids) {
    var source = connected(new EventSource('/events'));
    var pending = null;
    function soon() {
      if (pending === null) {
        pending = setTimeout(function () {
          pending = null;
          redraw(ids);
        }, 200);
      }
    }
    source.addEventListener('build', soon);
    source.addEventListener('resync', soon);
  }

  var log = document.getElementById('log');
  if (log) {
    followLog(log);
  }
  var tables = ['feeds', 'builds', 'deliveries'].filter(function (id) {
    return document.getElementById(id);
  });
  if (tables.length > 0) {
    followBuilds(tables);
  }
})();
