// An embedded Tomcat 10 with one servlet per area, for keygate's path
// battery (web/realapps_test.go). Each servlet answers with its area's name,
// so the test sees which area Tomcat actually served, whatever keygate
// decided. Tomcat's defaults are kept on purpose: it drops ";parameters"
// from every segment and then resolves dot segments, as deployed apps do.
//
// Usage: java -cp <tomcat10 jars>:<dir> RealApp <base dir>
// Prints "PORT=<n>" once it accepts connections.

import java.io.IOException;

import jakarta.servlet.ServletException;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;

import org.apache.catalina.Context;
import org.apache.catalina.connector.Request;
import org.apache.catalina.connector.Response;
import org.apache.catalina.startup.Tomcat;
import org.apache.catalina.valves.ValveBase;

public class RealApp {
    static final class Area extends HttpServlet {
        private static final long serialVersionUID = 1L;
        private final String name;

        Area(String name) {
            this.name = name;
        }

        @Override
        protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
            resp.setContentType("text/plain");
            resp.getWriter().print("KG-REALAPP APP=tomcat AREA=" + name + " URI=" + req.getRequestURI() + "\n");
        }
    }

    // Marks every answer that went through Tomcat's pipeline, its own error
    // pages included, so the test can tell them from keygate's.
    static final class Mark extends ValveBase {
        @Override
        public void invoke(Request req, Response resp) throws IOException, ServletException {
            resp.setHeader("X-Realapp", "tomcat");
            getNext().invoke(req, resp);
        }
    }

    public static void main(String[] args) throws Exception {
        Tomcat tomcat = new Tomcat();
        tomcat.setBaseDir(args[0]);
        tomcat.setPort(0);
        tomcat.getConnector(); // creates the default HTTP/1.1 connector
        tomcat.getHost().getPipeline().addValve(new Mark());
        Context ctx = tomcat.addContext("", args[0]);
        for (String name : new String[] {"public", "one", "two", "deny"}) {
            Tomcat.addServlet(ctx, name, new Area(name));
            ctx.addServletMappingDecoded("/" + name + "/*", name);
        }
        // The reserved prefix is keygate's: the app must never be asked for it.
        Tomcat.addServlet(ctx, "reserved", new Area("reserved"));
        ctx.addServletMappingDecoded("/.keygate/*", "reserved");
        Tomcat.addServlet(ctx, "none", new Area("none"));
        ctx.addServletMappingDecoded("/", "none");
        tomcat.start();
        System.out.println("PORT=" + tomcat.getConnector().getLocalPort());
        System.out.flush();
        tomcat.getServer().await();
    }
}
